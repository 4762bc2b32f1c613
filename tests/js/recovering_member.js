// A room member on the npm socket.io-client for the recovery tests (tests/test_recovery*.py).
// Joins ROOM on every connect that did not recover (a recovered socket is in its rooms
// already) and prints one JSON line per happening. Commands on stdin, one per line:
//   drop      lose the transport (as a network failure would) and stay away
//   back      reconnect after a drop
//   leave     disconnect deliberately, then connect again
//   emit JSON emit ["name", ...args]
// Closing stdin ends it.
// usage: node recovering_member.js URL ROOM TRANSPORT [RECONNECT_DELAY_MS]   (NODE_PATH: webapp/node_modules)
"use strict";
const readline = require("readline");
const { io } = require("socket.io-client");

const [url, room, transport, delay] = process.argv.slice(2);
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const reconnectionDelay = Number(delay || 300);
const socket = io(url, { transports: [transport], reconnectionDelay, reconnectionDelayMax: reconnectionDelay * 4 });

socket.on("connect", () => {
  say({ event: "connect", id: socket.id, recovered: Boolean(socket.recovered), eio: socket.io.engine.id });
  if (!socket.recovered) {
    socket.emit("join", room, (answer) => say({ event: "joined", answer, id: socket.id }));
  }
});
socket.on("disconnect", (reason) => say({ event: "disconnect", reason }));
socket.on("connect_error", (error) => say({ event: "connect_error", message: error.message }));
socket.onAny((name, ...args) => say({ event: "message", name, args, connected: socket.connected }));

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, rest] = [line.split(" ", 1)[0], line.slice(line.indexOf(" ") + 1)];
  if (command === "drop") {
    socket.io.reconnection(false);
    socket.io.engine.close();
  } else if (command === "back") {
    socket.io.reconnection(true);
    socket.connect();
  } else if (command === "leave") {
    socket.disconnect();
    socket.connect();
  } else if (command === "emit") {
    const [name, ...args] = JSON.parse(rest);
    socket.emit(name, ...args, (...answer) => say({ event: "ack", name, answer }));
  }
}).on("close", () => { socket.close(); process.exit(0); });
