"""monoport: one gevent process on one port in place of stunnel + HAProxy + Socket.IO + the web app."""

__version__ = "0.1.0"
