"""The error type of the portable modules: vadblocks' own where it is installed, else a local one."""

try:
    from framework.errors import VadblocksError as ServingError
except ImportError:  # packed into a .eim on a device without vadblocks

    class ServingError(Exception):  # type: ignore[no-redef]
        """A clear, user-facing error (bad model file, bad request)."""


__all__ = ["ServingError"]
