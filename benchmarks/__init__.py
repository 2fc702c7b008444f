"""Benchmarks of GCP Studio: does distillation deliver, and how fast is each part.

Run ``python -m benchmarks SUITE [--quick] [--out DIR]`` with SUITE one of `SUITES`. Each
suite writes its raw results as JSON (full runs to ``benchmarks/results/``, quick runs to
``--out`` or a temporary folder). ``docs/benchmarks.md`` explains the suites and results.
"""

SUITES = ("efficiency", "retrain", "speed", "teacher", "app", "cascade")
