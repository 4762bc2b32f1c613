// A room member on the npm socket.io-client, for tests/test_rolling_restart.py:
// joins its room on every connect (as the demo chat page does) and prints one
// JSON line per event. Closing its stdin ends it.
// usage: node room_member.js URL ROOM TRANSPORT   (NODE_PATH: webapp/node_modules)
"use strict";
const { io } = require("socket.io-client");

const [url, room, transport] = process.argv.slice(2);
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const socket = io(url, { transports: [transport], reconnectionDelay: 300, reconnectionDelayMax: 1500 });

socket.on("connect", () => {
  const sid = socket.io.engine.id;
  socket.emit("join", room, (answer) => say({ event: "joined", answer, sid }));
});
socket.on("disconnect", (reason) => say({ event: "disconnect", reason }));
socket.on("connect_error", (error) => say({ event: "connect_error", message: error.message }));
socket.on("room_message", (data) => say({ event: "message", data }));
process.stdin.on("end", () => { socket.close(); process.exit(0); });
process.stdin.resume();
