"""vadblocks host framework: plugin host, parameters, data contract, pipeline and CLI."""

__version__ = "0.1.0"

from framework.hookspecs import hookimpl  # noqa: E402  (re-exported for plugin authors)

__all__ = ["hookimpl", "__version__"]
