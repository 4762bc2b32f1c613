"""Classify the first bytes of a connection; pure, no I/O.

Theory of operation: the listener peeks at (or, inside TLS, reads) the first
bytes of a stream and asks :func:`classify` what they are. There are three
outcomes, like sslh's probes: a :class:`Kind`, or :data:`NEED_MORE` when the
bytes so far are a proper prefix of some signature and could still go either
way. Signatures are tried in the order of :data:`ORDER`; every signature is
at most :data:`MAX_SIGNATURE` bytes, so a caller never needs more than that
to get an answer.
"""

from __future__ import annotations

import enum
from typing import Final, Union

from .needmore import NEED_MORE, NeedMore


class Kind(enum.Enum):
    PROXY = "proxy"
    TLS = "tls"
    FLASH = "flash"
    HTTP = "http"
    RAW = "raw"


Result = Union[Kind, NeedMore]

PROXY_V1_SIGNATURE: Final = b"PROXY "
PROXY_V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
FLASH_REQUEST: Final = b"<policy-file-request/>\x00"
#: Methods monoport serves as HTTP; anything else is raw TCP.
HTTP_METHODS: Final = (
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT",
)
_HTTP_SIGNATURES: Final = tuple(m + b" " for m in HTTP_METHODS)


def _match(prefix: bytes, signature: bytes) -> bool | NeedMore:
    """True when prefix starts with signature, NEED_MORE while it still may."""
    if prefix.startswith(signature):
        return True
    if signature.startswith(prefix):
        return NEED_MORE
    return False


def _tls(prefix: bytes) -> Result | None:
    # A TLS record: content type 22 (handshake), major version 3, minor 0..4.
    # Old minors are still classified as TLS so the handshake can refuse them
    # with a proper alert instead of being taken for raw garbage.
    if prefix[0] != 0x16:
        return None
    if len(prefix) < 3:
        return NEED_MORE if len(prefix) == 1 or prefix[1] == 0x03 else None
    return Kind.TLS if prefix[1] == 0x03 and prefix[2] <= 0x04 else None


#: The signatures tried before TLS, in order (PROXY, Flash, HTTP).
_SIGNATURES: Final = (
    (Kind.PROXY, PROXY_V2_SIGNATURE), (Kind.PROXY, PROXY_V1_SIGNATURE), (Kind.FLASH, FLASH_REQUEST),
    *((Kind.HTTP, signature) for signature in _HTTP_SIGNATURES),
)
#: The same, by first byte: a TLS ClientHello (0x16) meets none, a GET only "GET ".
_BY_FIRST_BYTE: Final = {
    first: tuple(entry for entry in _SIGNATURES if entry[1][0] == first) for first in {sig[0] for _, sig in _SIGNATURES}
}


def classify(prefix: bytes) -> Result:
    """Say what protocol a connection speaks from its first bytes.

    Args:
        prefix: the bytes received so far (any length, possibly empty).
    Returns:
        a :class:`Kind`, or :data:`NEED_MORE` if ``prefix`` is still ambiguous.
    """
    if not prefix:
        return NEED_MORE
    undecided = False
    # only the signatures that begin with the prefix's first byte can match or still be
    # undecided (every other one fails both tests of _match), in the order above
    for kind, signature in _BY_FIRST_BYTE.get(prefix[0], ()):
        found = _match(prefix, signature)
        if found is NEED_MORE:
            undecided = True
        elif found:
            return kind
    tls = _tls(prefix)
    if tls is Kind.TLS:
        return tls
    if tls is NEED_MORE:
        undecided = True
    return NEED_MORE if undecided else Kind.RAW


#: The longest signature; a caller that has this many bytes always gets a Kind.
MAX_SIGNATURE: Final = max(len(FLASH_REQUEST), len(PROXY_V2_SIGNATURE), *(len(s) for s in _HTTP_SIGNATURES))
