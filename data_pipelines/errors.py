"""The base of every error that means "your data or files are not what was expected".

Command-line tools print these as one line (no traceback) and exit with status 2.
"""


class DataError(ValueError):
    """Bad or missing input data, named precisely enough to fix."""


class OptionError(DataError):
    """Options of a data tool that contradict each other or are out of range; raised before any work."""
