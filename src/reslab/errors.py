"""Errors that mean "the user asked for something wrong", as opposed to bugs.

The CLI turns a `ReslabError` into one line on stderr and exit code 2; anything else is a bug and keeps its
traceback.
"""


class ReslabError(Exception):
    """A user mistake or an unusable input: reported as one line, never a traceback."""


class ModelError(ReslabError, ValueError):
    """Unknown model name, impossible depth, bad shortcut option, ..."""


class DataError(ReslabError):
    """Missing, corrupt or malformed data."""


class ConfigError(ReslabError, ValueError):
    """A bad hyperparameter or flag value."""
