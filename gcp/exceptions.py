"""Exceptions raised by the gcp engine.

Every error that bad input, a misbehaving teacher or an incompatible file can cause is a
subclass of `GCPError`, so the app and the CLI catch that one class and show its message.
Anything else that escapes is a bug.
"""


class GCPError(Exception):
    """Base class of every error the engine raises on purpose."""


class GraphValidationError(GCPError, ValueError):
    """A concept graph is invalid: a cycle, an unknown node, a bad name or bad values."""


class CheckpointError(GCPError):
    """A saved student does not match the graph or the format it is loaded against."""


class EncoderError(GCPError):
    """The text encoder could not be loaded or could not encode the input."""


class TeacherError(GCPError):
    """A teacher could not answer: unreachable, misconfigured, or a text it does not know."""


class BudgetExceededError(TeacherError):
    """Sending more requests would exceed the money or label budget."""


class DataImportError(GCPError, ValueError):
    """An imported data file has missing columns, empty texts, duplicates or bad labels."""


class EmptyPoolError(GCPError):
    """No unlabelled text is left to acquire from."""


class ProjectError(GCPError):
    """A project folder or its store is missing, locked or in an unexpected state."""


class StudentError(GCPError, ValueError):
    """A student got input it cannot use: wrong embedding shape, bad labels or an invalid intervention."""


class AcquisitionError(GCPError, ValueError):
    """An acquisition request is invalid: unknown strategy, bad batch size or mismatched inputs."""
