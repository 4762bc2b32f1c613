#!/usr/bin/env bash
# Run the official Engine.IO v4 and Socket.IO v5 compliance suites (socketio/engine.io-protocol,
# socketio/socket.io-protocol: test-suite/test-suite.js, mocha) against monoport, each against the
# server its README describes (tests/apps/eio_echo_app.py, tests/apps/protocol_suite_app.py).
# Not part of `make test`: it clones both repositories at the pinned commits and installs the
# suites' npm dependencies (mocha, chai, ws, node-fetch) into a temporary directory.
# usage: scripts/protocol-suites.sh [PORT]      (needs git, node, npm)
# EIO_REPO / SIO_REPO: clone from there instead of GitHub (a local mirror).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${1:-18740}
PY=${PY:-$ROOT/.venv/bin/python}
EIO_COMMIT=f21de7b00ed09b3bbad2807db718ea5d6bc36aba
SIO_COMMIT=4f633dd6a4445492d57af3b27ddd2d336014f1f1
EIO_REPO=${EIO_REPO:-https://github.com/socketio/engine.io-protocol.git}
SIO_REPO=${SIO_REPO:-https://github.com/socketio/socket.io-protocol.git}
WORK=$(mktemp -d)
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

fetch_suite() {  # repository commit dir
  git clone -q "$1" "$WORK/$3"
  git -C "$WORK/$3" checkout -q "$2"
  sed -i "s#http://localhost:3000#http://127.0.0.1:$PORT#" "$WORK/$3/test-suite/test-suite.js"
}

run_suite() {  # dir app sio-path
  "$PY" -m monoport --bind "127.0.0.1:$PORT" --app "$2" --sio-path "$3" --tls off --raw off \
    >"$WORK/$1.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do grep -q "listening on" "$WORK/$1.log" 2>/dev/null && break; sleep 0.1; done
  echo "== $1 against monoport ($2 on $3)"
  (cd "$WORK/$1/test-suite" && npx mocha test-suite.js) || status=1
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
  SERVER=
}

fetch_suite "$EIO_REPO" "$EIO_COMMIT" eio
fetch_suite "$SIO_REPO" "$SIO_COMMIT" sio
(cd "$WORK/sio/test-suite" && npm ci --no-audit --no-fund --loglevel=error)
ln -s "$WORK/sio/test-suite/node_modules" "$WORK/eio/test-suite/node_modules"
status=0
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
run_suite eio tests.apps.eio_echo_app:app /engine.io/
run_suite sio tests.apps.protocol_suite_app:app /socket.io/
exit $status
