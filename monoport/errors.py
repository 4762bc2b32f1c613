"""The project's exception tree, named by cause (STYLE habit 7)."""


class MonoportError(Exception):
    """Root of every error monoport raises on purpose."""


class ConfigError(MonoportError):
    """A configuration value is wrong; ``flag`` names the option at fault."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag
        self.reason = message


class ProtocolViolation(MonoportError):
    """The remote side sent bytes that break the protocol (the client's fault).

    ``status`` is the HTTP status that fits when the violation happens inside
    HTTP (400 by default, 431 for an oversized head), like h11's hint.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class PeerUnavailable(MonoportError):
    """A peer instance or backend refused or dropped a connection."""
