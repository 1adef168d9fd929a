"""The one exception type the framework raises for bad input or configuration."""


class VadblocksError(Exception):
    """A user-facing error: the message names what is wrong and how to fix it.

    The CLI prints the message (no traceback) and exits with status 2.
    """


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived (SIGINT raises KeyboardInterrupt): unwind, removing partial outputs.

    A BaseException, like KeyboardInterrupt, so ``except Exception`` blocks do not swallow it.
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        super().__init__(signal.Signals(signum).name)
