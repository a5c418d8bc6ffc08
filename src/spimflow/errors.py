"""Errors a user can act on: each names the file or config key and what was expected."""


class SpimflowError(Exception):
    """Base class for errors reported to the user without a traceback."""


class ConfigError(SpimflowError):
    """A configuration value is missing, unknown or invalid."""


class InputFileError(SpimflowError):
    """An input file is missing, unreadable, corrupt or of the wrong shape."""


class OrientationError(SpimflowError):
    """Sample and atlas orientation or extent disagree."""
