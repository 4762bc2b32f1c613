"""Memory per idle connection: greenlets monoport spawns keep no spawning stack unless asked.

gevent's default records, for each Greenlet, its spawner's innermost frames
(about 5 KB per idle Socket.IO WebSocket, measured with ``python -m bench
--workloads idle``); ``monoport.cli.lean_greenlets`` turns that off unless the
operator set ``GEVENT_TRACK_GREENLET_TREE``, which gevent reads itself.
"""

import gevent
import pytest

from monoport.cli import lean_greenlets


@pytest.fixture
def tracking():
    saved = gevent.config.track_greenlet_tree
    gevent.config.track_greenlet_tree = True
    yield
    gevent.config.track_greenlet_tree = saved


def test_greenlets_spawned_after_startup_keep_no_spawning_stack(tracking):
    lean_greenlets({})
    glet = gevent.spawn(lambda: None)
    glet.join(timeout=10)
    assert glet.spawning_stack is None
    assert glet.spawning_greenlet is None


def test_the_operators_gevent_setting_is_left_alone(tracking):
    lean_greenlets({"GEVENT_TRACK_GREENLET_TREE": "1"})
    glet = gevent.spawn(lambda: None)
    glet.join(timeout=10)
    assert gevent.config.track_greenlet_tree is True
    assert glet.spawning_stack is not None
