"""TLS termination: certificates, SNI, reload, and the server-side handshake.

Theory of operation: :class:`Certificates` loads every ``--cert/--key`` pair
into its own ``SSLContext`` and indexes them by the DNS names in each
certificate. The first pair's context is the one every handshake starts
with; its ``sni_callback`` swaps in the context whose certificate names the
requested host (exact name, then ``*.parent`` wildcard), or keeps the first
one (``--strict-sni``: refuses with an ``unrecognized_name`` alert).
SIGHUP builds a new :class:`Certificates` and the listener swaps one
reference: handshakes already done keep their context, new ones get the new.
"""

from __future__ import annotations

import logging
import ssl as _stdlib_ssl
from dataclasses import dataclass
from typing import Any

import gevent
from gevent import ssl
from cryptography import x509
from cryptography.x509.oid import NameOID

from .errors import ConfigError

log = logging.getLogger("monoport")

#: Ciphers for TLS 1.2 (TLS 1.3 suites are always the strong ones): forward
#: secrecy and AEAD only, as Mozilla's "intermediate" profile.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!SHA1"
ALPN = ["http/1.1"]


class HandshakeTimeout(Exception):
    """The TLS handshake did not finish within the deadline."""


@dataclass(frozen=True)
class Pair:
    cert: str
    key: str


def names_in(cert_path: str) -> list[str]:
    """The DNS names a certificate is valid for (SAN, else the CN), lower-cased."""
    with open(cert_path, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return names


def _context(pair: Pair) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_COMPRESSION
    ctx.set_alpn_protocols(ALPN)
    try:
        ctx.load_cert_chain(pair.cert, pair.key)
    except (OSError, _stdlib_ssl.SSLError) as exc:
        raise ConfigError("--cert", f"cannot load {pair.cert} with {pair.key}: {exc}") from None
    return ctx


class Certificates:
    """Every configured certificate, ready for handshakes."""

    def __init__(self, pairs: list[Pair], strict_sni: bool = False) -> None:
        if not pairs:
            raise ConfigError("--cert", "TLS is on but no certificate is configured")
        self.pairs = pairs
        self.strict_sni = strict_sni
        self.by_name: dict[str, ssl.SSLContext] = {}
        contexts = [_context(pair) for pair in pairs]
        for pair, ctx in zip(pairs, contexts):
            for name in names_in(pair.cert):
                self.by_name.setdefault(name, ctx)
        self.default = contexts[0]
        for ctx in contexts:
            ctx.sni_callback = self._pick
        self.names = sorted(self.by_name)

    def lookup(self, name: str) -> ssl.SSLContext | None:
        name = name.lower().rstrip(".")
        if name in self.by_name:
            return self.by_name[name]
        _, dot, parent = name.partition(".")
        return self.by_name.get("*." + parent) if dot else None

    def _pick(self, sslobj: Any, server_name: str | None, _ctx: Any) -> int | None:
        try:
            sslobj.monoport_sni = server_name
        except AttributeError:
            pass
        if server_name is None:
            return None
        ctx = self.lookup(server_name)
        if ctx is None:
            if self.strict_sni:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            return None
        if ctx is not self.default:
            sslobj.context = ctx
        return None

    def handshake(self, sock: Any, timeout: float) -> ssl.SSLSocket:
        """Run the server side of a handshake on an accepted socket.

        Raises:
            HandshakeTimeout: past ``timeout`` seconds.
            ssl.SSLError, OSError: the client failed the handshake or went away.
        """
        tls_sock = self.default.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        # the one deadline is the Timeout below: a socket timeout as well would start and
        # stop a second timer on every wait of the handshake, and never fire first
        tls_sock.settimeout(None)
        try:
            with gevent.Timeout(timeout, HandshakeTimeout):
                tls_sock.do_handshake()
        except BaseException:
            tls_sock.close()
            raise
        return tls_sock


def answer_tls_alpn(sock: Any, pem: str, timeout: float) -> None:
    """RFC 8737: handshake with the challenge certificate, ALPN acme-tls/1, then close.

    ``pem`` holds the challenge certificate and its key. No application data
    follows a validation handshake: the socket is closed once it is done.

    Raises:
        HandshakeTimeout, ssl.SSLError, OSError: as :meth:`Certificates.handshake`.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["acme-tls/1"])
    ctx.load_cert_chain(pem)
    tls_sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    tls_sock.settimeout(timeout)
    try:
        with gevent.Timeout(timeout, HandshakeTimeout):
            tls_sock.do_handshake()
    finally:
        tls_sock.close()


def describe(tls_sock: Any) -> dict[str, Any]:
    """The ``monoport.tls`` environ value for a finished handshake."""
    cipher = tls_sock.cipher()
    return {
        "version": tls_sock.version(),
        "cipher": cipher[0] if cipher else None,
        "sni": getattr(tls_sock, "monoport_sni", None),
        "alpn": tls_sock.selected_alpn_protocol(),
    }


def failure_reason(exc: BaseException) -> str:
    """A short, stable reason for a failed handshake, for logs and stats."""
    if isinstance(exc, HandshakeTimeout):
        return "timeout"
    if isinstance(exc, _stdlib_ssl.SSLError):
        reason = (getattr(exc, "reason", None) or "ssl_error").lower()
        return reason
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, OSError):
        return "eof" if exc.errno is None else f"os_error_{exc.errno}"
    return type(exc).__name__
