"""Which request paths the router gives to Socket.IO (every --sio-path, with or without its slash)."""

from monoport.router import Router


def app(environ, start_response):  # the user's app: never called here
    raise AssertionError


def test_socketio_paths_are_the_prefixes_and_each_prefix_without_its_slash():
    router = Router(app, sio=object(), sio_paths=["/socket.io/", "/chat/io/"])
    for path in ("/socket.io/", "/socket.io", "/socket.io/x", "/chat/io/", "/chat/io"):
        assert router.is_sio_path(path), path
    for path in ("/", "/socket.iox", "/socket", "/chat/", "/chat/iox", "/x/socket.io/", ""):
        assert not router.is_sio_path(path), path


def test_without_a_socketio_server_no_path_is_socketio():
    router = Router(app, sio=None, sio_paths=["/socket.io/"])
    assert not router.is_sio_path("/socket.io/") and not router.is_sio_path("/socket.io")
