"""Pure protocol code: bytes in, decisions out; no socket, ssl, select nor gevent.

The sniffer (:mod:`.sniff`, with the SNI/ALPN of a ClientHello in
:mod:`.clienthello`), the PROXY header (:mod:`.proxyproto`), the HTTP request
head (:mod:`.httphead`), the raw transport's line framing
(:mod:`.rawframing`), the Engine.IO payload checks (:mod:`.eiopackets`), the
address and trust helpers (:mod:`.trust`) and the canned HTTP responses
(:mod:`.responses`). Each parser answers a result, a refusal, or
:data:`NEED_MORE`. ``tests/test_layout.py`` fails if a module here pulls in
an I/O module, so that these stay testable byte by byte, like h11.
"""

from .needmore import NEED_MORE, NeedMore

__all__ = ["NEED_MORE", "NeedMore"]
