"""Forwarding a connection to a peer: the PROXY v2 header, the replay, the first answer, the splice.

Forwarding: dial the peer's listener, write a PROXY v2 header (the real
client, TLS version and SNI when the client used TLS, our id as forwarder),
replay every byte already read (the head and anything after it in
the connection's stream), then pump client bytes up while waiting for the
peer's first answer bytes. Until that answer arrives nothing has reached
the client, so a peer that refuses, resets, closes without answering or
answers "full" is skipped and the same bytes (kept in a bounded log) go to
the next one. The first real answer commits: it is written to the client
and :func:`monoport.splice.splice` carries the rest both ways.
"""

from __future__ import annotations

import logging
import socket
from typing import Any, Callable, Final

import gevent

from .connection import Connection, format_address
from .errors import PeerUnavailable
from .peers import Peer, PeerTable
from .splice import describe_end, dial, splice, termination_of
from .termination import Termination
from .wire import proxyproto

log = logging.getLogger("monoport")

#: Deadline to connect to a peer's listener; peers are on the same LAN or host.
DIAL_TIMEOUT: Final = 2.0
#: How long a forward may wait for the peer's first answer byte. Long-polling
#: GETs legitimately wait pingInterval (25 s by default) before answering.
FIRST_BYTE_TIMEOUT: Final = 120.0
#: Client bytes kept for replay to another peer while the first answer is
#: awaited; past this the forward is committed to the current peer.
REPLAY_LIMIT: Final = 256 * 1024
#: Header that marks a 503 as "instance full" rather than the app's own 503.
FULL_HEADER: Final = "X-Monoport-Full"


class _Retry(Exception):
    """This peer did not take the connection; nothing reached the client."""


class Forwarder:
    """Carries a connection to the first of some peers that takes it."""

    def __init__(self, my_id: str, cluster: str, peers: PeerTable,
                 on_taken: Callable[[Connection, Peer], None]) -> None:
        self.my_id = my_id
        self.cluster = cluster
        self.peers = peers
        #: called once a peer answered, before the splice: the connection is the peer's now
        self.on_taken = on_taken

    def forward(self, conn: Connection, peers: list[Peer], affinity: bool = False) -> bool:
        """Try ``peers`` in order; True once one took the connection (then it is finished)."""
        if not peers:
            return False
        replay = bytearray(conn.stream.buffered())
        for peer in peers:
            try:
                backend = dial(peer.address, DIAL_TIMEOUT)
            except PeerUnavailable as exc:
                self.peers.mark_down(peer, f"refused a forward: {exc}")
                continue
            try:
                self._forward_to(conn, peer, backend, replay)
            except _Retry as why:
                log.info("forward of %s to %s not taken (%s); %s", format_address(conn.client), peer.name, why,
                         "serving here" if affinity else "trying the next peer")
                continue
            finally:
                backend.close()
            return True
        return False

    def proxy_header(self, conn: Connection) -> bytes:
        """The PROXY v2 header that tells the peer who the client is (and that we sent it)."""
        tls_version = authority = None
        if conn.tls is not None:
            tls_version, authority = conn.tls.get("version") or "TLS", conn.tls.get("sni")
        elif conn.proxied_tls:
            header = conn.proxy_header
            tls_version = (header.tls_version if header is not None else None) or "TLS"
            authority = header.authority if header is not None else None
        local = conn.local if isinstance(conn.local, tuple) else ("0.0.0.0", 0)
        return proxyproto.build_v2(conn.client, local, tls_version=tls_version, authority=authority,
                                   forwarded_by=self.my_id, cluster=self.cluster)

    def _forward_to(self, conn: Connection, peer: Peer, backend: socket.socket, replay: bytearray) -> None:
        """One attempt. Raises _Retry while nothing has reached the client."""
        try:
            backend.sendall(self.proxy_header(conn) + bytes(replay))
        except OSError as exc:
            self.peers.mark_down(peer, f"send failed: {exc}")
            raise _Retry(f"send failed: {exc}") from None
        pump = _Pump(conn.sock, backend, replay)
        try:
            first = _first_answer(backend)
        except OSError as exc:
            pump.stop()
            if pump.committed:
                raise
            self.peers.mark_down(peer, f"broken before answering: {exc}")
            raise _Retry(str(exc)) from None
        pump.stop()
        if not first:
            if pump.committed:
                conn.end(Termination.PEER_DOWN, f"forwarded to {peer.name}; closed without an answer")
                return
            if conn.kind.startswith("raw"):
                self.peers.mark_full(peer)  # a raw refusal is a silent close
            else:
                self.peers.mark_down(peer, "closed before answering")
            raise _Retry("closed before answering")
        if is_full_answer(first) and not pump.committed:
            self.peers.mark_full(peer)
            raise _Retry("full")
        conn.stream.take_all()  # the peer has them now
        self.on_taken(conn, peer)
        conn.sock.sendall(first)
        # splice gets the unmetered socket (zero-copy and TLS half-close need
        # the real one); its byte counts are added to the connection's.
        client = getattr(conn.sock, "wrapped", conn.sock)
        client.settimeout(None)
        result = splice(client, backend, backend_eof_ends=True)
        conn.bytes_in += result.bytes_up
        conn.bytes_out += result.bytes_down
        conn.end(termination_of(result), f"forwarded to {peer.name}: up {pump.sent + result.bytes_up} B, "
                                         f"down {len(first) + result.bytes_down} B, {describe_end(result)}")


def _first_answer(backend: socket.socket) -> bytes:
    backend.settimeout(FIRST_BYTE_TIMEOUT)
    data = backend.recv(65536)
    if data.startswith(b"HTTP/1.1 503 ") and b"\r\n\r\n" not in data:
        while len(data) < 8192 and b"\r\n\r\n" not in data:  # the whole head, to see the marker
            more = backend.recv(65536)
            if not more:
                break
            data += more
    return data


def is_full_answer(first: bytes) -> bool:
    """A peer's 503 that says "instance full" (try the next one), not the app's own 503."""
    if not first.startswith(b"HTTP/1.1 503 "):
        return False
    head = first.partition(b"\r\n\r\n")[0].lower()
    return f"\r\n{FULL_HEADER.lower()}:".encode() in head


class _Pump:
    """Client bytes up to the peer while its first answer is awaited.

    Everything read is appended to ``replay`` (for the next peer) until
    :data:`REPLAY_LIMIT`; past that the attempt is ``committed``. Stopping is
    safe at any time: a greenlet blocked in ``recv`` loses nothing (the bytes
    stay in the kernel or in OpenSSL's buffer), and one in ``sendall`` is
    allowed to finish its chunk.
    """

    def __init__(self, client: Any, backend: socket.socket, replay: bytearray) -> None:
        self.client, self.backend, self.replay = client, backend, replay
        self.sent = 0
        self.committed = False
        self.receiving = False
        self.stopping = False
        self.greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        self.client.settimeout(None)
        try:
            while not self.stopping:
                self.receiving = True
                data = self.client.recv(65536)
                self.receiving = False
                if not data:
                    return  # half-close: the answer still comes
                if len(self.replay) + len(data) > REPLAY_LIMIT:
                    self.committed = True
                else:
                    self.replay += data
                self.backend.sendall(data)
                self.sent += len(data)
        except OSError:
            return

    def stop(self) -> None:
        self.stopping = True
        if self.receiving:
            self.greenlet.kill(block=True)
        else:
            self.greenlet.join()
