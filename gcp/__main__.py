"""Entry point of ``python -m gcp``."""

import sys

from gcp.cli import main

sys.exit(main())
