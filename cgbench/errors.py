"""The errors a user can fix. The CLI prints them as one line and exits with status 2."""


class CgbenchError(Exception):
    """A problem with the user's input: names the problem and the fix, in one line."""


class DataError(CgbenchError):
    """A dataset folder, file or image that cannot be used."""


class ConfigError(CgbenchError):
    """An unknown or invalid configuration key or value."""
