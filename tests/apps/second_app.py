"""Another deployment's app: echo_app's routes and events under another ``--app`` spec (another cluster)."""

from tests.apps.echo_app import app, sio  # noqa: F401
