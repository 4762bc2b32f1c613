"""What is loaded before serving is frozen out of garbage collection; garbage from loading is not kept.

Full collections walked every object of the loaded app again (tens of
milliseconds with Flask and Socket.IO loaded, no request moving meanwhile);
``monoport.cli.freeze_loaded_objects`` runs before the listeners start.
"""

import gc
import weakref

import pytest

from monoport.cli import freeze_loaded_objects


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture
def unfrozen():
    yield
    gc.unfreeze()


def test_objects_alive_at_startup_leave_the_collectors_generations(unfrozen):
    kept = Node()
    dropped = weakref.ref(Node())  # garbage made while loading
    assert any(obj is kept for obj in gc.get_objects())
    assert freeze_loaded_objects() > 0
    assert not any(obj is kept for obj in gc.get_objects())
    assert dropped() is None  # collected, not frozen for good
    later = Node()
    assert any(obj is later for obj in gc.get_objects())  # what requests make is collected as ever


def test_the_server_freezes_its_loaded_app_before_serving(monoport):
    server = monoport(["--app", "tests.apps.echo_app:app", "--tls", "off", "--log-level", "debug"])
    server.wait_log("objects of the loaded app frozen out of garbage collection")
