"""``python -m monoport`` and the ``monoport`` script: monkey-patch before anything imports socket."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402


def run() -> None:
    from monoport.cli import main

    sys.exit(main())


if __name__ == "__main__":
    run()
