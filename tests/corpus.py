"""Real first bytes of each protocol, made by the real libraries (no hand-typed hex)."""

from __future__ import annotations

import ssl
import warnings

from monoport.wire import proxyproto


def client_hello(server_hostname: str | None = "localhost", *, max_version: ssl.TLSVersion | None = None,
                 ciphers: str | None = None, alpn: list[str] | None = None) -> bytes:
    """A real ClientHello from Python's ssl module (MemoryBIO, no socket).

    ``ciphers`` such as ``"DEFAULT:@SECLEVEL=0"`` let OpenSSL 3 offer the
    old protocol versions it otherwise refuses to speak at all.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    if max_version is not None:
        with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: offering them is the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = max_version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


HTTP_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n40",
    b"PUT /x HTTP/1.0\r\n\r\n",
    b"DELETE /x HTTP/1.1\r\n\r\n",
    b"HEAD / HTTP/1.1\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\n\r\n",
    b"PATCH /p HTTP/1.1\r\n\r\n",
]
FLASH = b"<policy-file-request/>\x00"
PROXY_V1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 56324 8443\r\n"
PROXY_V2 = proxyproto.build_v2(("203.0.113.7", 56324), ("127.0.0.1", 8443))
RAW = [b"40\n", b'0{"sid":"x"}\n', b"hello\n", b"\x00\x01\x02", b"SSH-2.0-OpenSSH_9.2\r\n", b"b AAAA\n"]
