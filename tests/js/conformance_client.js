// The npm socket.io-client against monoport's Engine.IO corrections (tests/test_eio_conformance.py):
// connects over polling, lets the client upgrade to WebSocket, calls "echo", then tries a
// namespace the server does not have. Prints one JSON line per step, then exits.
// usage: node conformance_client.js URL   (NODE_PATH: webapp/node_modules)
"use strict";
const { io } = require("socket.io-client");

const url = process.argv[2];
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const fail = setTimeout(() => { say({ event: "timeout" }); process.exit(1); }, 20000);

const socket = io(url, { transports: ["polling", "websocket"], reconnection: false });
socket.on("connect_error", (error) => say({ event: "connect_error", namespace: "/", message: error.message }));
socket.on("connect", () => {
  const engine = socket.io.engine;
  const afterUpgrade = () => {
    socket.emit("echo", "through " + engine.transport.name, (answer) => {
      say({ event: "echo", answer, transport: engine.transport.name });
      const other = io(url + "/random", { transports: ["websocket"], reconnection: false });
      other.on("connect", () => { say({ event: "connected", namespace: "/random" }); done(other); });
      other.on("connect_error", (error) => { say({ event: "connect_error", namespace: "/random", message: error.message }); done(other); });
    });
  };
  if (engine.transport.name === "websocket") afterUpgrade();
  else engine.once("upgrade", afterUpgrade);
});

function done(other) {
  other.close();
  socket.close();
  clearTimeout(fail);
  process.exit(0);
}
