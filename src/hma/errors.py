"""User-facing errors.

Everything a user can cause (a bad file, a wrong flag, a malformed action) raises a
subclass of :class:`HmaError` with one sentence naming the bad value and what was
expected. The CLI prints that sentence and exits with status 2 instead of a traceback.
"""


class HmaError(Exception):
    """Base class of every error hma reports to users."""


class DataError(HmaError, ValueError):
    """A dataset on disk or an array handed to hma is malformed."""


class CheckpointError(HmaError, ValueError):
    """A checkpoint or tokenizer file is missing, truncated or corrupt."""


class ConfigError(HmaError, ValueError):
    """A configuration value or command-line option is invalid."""


class EmbodimentError(HmaError, KeyError):
    """An embodiment name is unknown, or its actions do not match its specification."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class TrainingError(HmaError, RuntimeError):
    """Training went wrong in a way the user can fix (a loss that diverged)."""
