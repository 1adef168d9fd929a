"""The one exception type the framework raises for bad input or configuration."""


class VadblocksError(Exception):
    """A user-facing error: the message names what is wrong and how to fix it.

    The CLI prints the message (no traceback) and exits with status 2.
    """
