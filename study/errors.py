"""The one error type every layer raises for bad input.

It sits below everything (no imports) so that the engine, the workloads, the config layer
and the CLI all speak of a bad key the same way: the key's dotted path and what is allowed.
The CLI prints it as one line and exits 2.
"""


class ConfigError(ValueError):
    """A configuration value that cannot be used: ``key`` is its dotted path."""

    def __init__(self, key: str, allowed: str):
        self.key = key
        self.allowed = allowed
        super().__init__(f"{key}: {allowed}")


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) asked the run to stop: handled like Ctrl-C, with the signal kept.

    A KeyboardInterrupt so that every ``except KeyboardInterrupt`` and ``finally`` on the way
    out (Ray task cancellation, lock release) runs as for Ctrl-C; the CLI exits 128 + signum.
    """

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"signal {signum}")


class RunFailed(RuntimeError):
    """A failure while running (not bad input): the CLI prints its one line and exits 1."""
