"""The one place that knows which WebSocket library serves the upgrade.

gevent-websocket (the design's choice) has had no release since 2017; keeping
it behind this module means python-engineio's other driver could replace it
by changing only this file. The raw TCP transport does not use it at all.
"""

from __future__ import annotations

from geventwebsocket.handler import WebSocketHandler

#: pywsgi handler class that upgrades WebSocket requests and sets
#: ``environ['wsgi.websocket']`` as python-engineio's gevent driver expects.
HandlerBase = WebSocketHandler
LIBRARY = "gevent-websocket"
