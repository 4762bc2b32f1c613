// monoport demo chat: the browser side of the protocol documented in webapp/__init__.py.
// User data only ever reaches the page through textContent (never innerHTML).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const STORE_NICK = "monoport.nick";
  const STORE_ROOM = "monoport.room";
  const TYPING_SHOWN_MS = 3000;
  const TYPING_SEND_MS = 1500;

  // away: between a disconnect and the next `connect`; with the server's --recovery, the
  // messages missed meanwhile are delivered then (before `connect`) and counted in `missed`
  const state = { room: null, nick: null, messages: new Map(), typing: new Map(), lastTyping: 0, errorTimer: null,
                  away: false, missed: 0 };

  function setBadge(el, text, kind) {
    el.textContent = text;
    el.className = "badge" + (kind ? " " + kind : "");
  }

  function showError(code, message) {
    const box = $("error");
    box.textContent = message;
    box.dataset.code = code || "";
    box.hidden = false;
    clearTimeout(state.errorTimer);
    state.errorTimer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  if (typeof io !== "function") {
    setBadge($("conn"), "no client library", "bad");
    showError("no_client", "The Socket.IO client did not load (/vendor/socket.io.min.js): run `make node`.");
    return;
  }

  // ?transport=polling forces long-polling; ?transport=websocket skips it.
  const params = new URLSearchParams(location.search);
  const forced = params.get("transport");
  const options = {};
  if (forced === "polling" || forced === "websocket") options.transports = [forced];
  const socket = io(options);
  window.chatSocket = socket; // for people poking around in the console

  // -- how we are connected ----------------------------------------------------
  function showTransport() {
    const engine = socket.io.engine;
    const name = engine && engine.transport ? engine.transport.name : "none";
    document.body.dataset.transport = name;
    setBadge($("transport"), "transport: " + name + (forced ? " (forced)" : ""), name === "websocket" ? "good" : "warn");
  }

  function showTls() {
    const secure = location.protocol === "https:";
    document.body.dataset.tls = secure ? "on" : "off";
    setBadge($("tls"), secure ? "TLS: on" : "TLS: off", secure ? "good" : "warn");
    fetch("/api/info", { cache: "no-store" }).then((r) => r.json()).then((info) => {
      let text = secure ? "TLS: on" : "TLS: off";
      if (info.tls) text += " (" + info.tls.version + ", ended by monoport)";
      else if (secure && info.tls_by === "proxy") text += " (ended by a trusted proxy)";
      else if (secure) text += " (ended before monoport; proxy not trusted)";
      document.body.dataset.scheme = info.scheme;
      setBadge($("tls"), text, secure ? "good" : "warn");
    }).catch(() => {});
  }

  socket.io.on("open", () => {
    showTransport();
    socket.io.engine.on("upgrade", showTransport);
  });

  socket.on("connect", () => {
    document.body.dataset.state = "connected";
    // socket.recovered: the server (--recovery) gave back this socket's id and rooms, and
    // the messages missed while away arrived before this event, in place in the list
    const missed = state.missed;
    state.away = false;
    state.missed = 0;
    document.body.dataset.recovered = socket.recovered ? "true" : "false";
    setBadge($("conn"), !socket.recovered ? "connected" : "connected (recovered" +
      (missed ? ", " + missed + " missed message" + (missed === 1 ? "" : "s") + " shown" : "") + ")", "good");
    showTransport();
    showTls();
    const nick = localStorage.getItem(STORE_NICK);
    if (nick) join(localStorage.getItem(STORE_ROOM) || "lobby", nick); // a reload rejoins
  });

  socket.on("disconnect", (reason) => {
    state.away = true;
    state.missed = 0;
    document.body.dataset.state = "disconnected";
    setBadge($("conn"), "disconnected (" + reason + ")", "bad");
    showTransport();
    enableSend(false);
  });

  socket.on("connect_error", (err) => {
    setBadge($("conn"), "cannot connect: " + err.message, "bad");
  });

  // -- rooms and members -------------------------------------------------------
  function join(room, nick) {
    socket.emit("join", { room: room, nick: nick }, (res) => {
      if (!res || !res.ok) {
        if (res) showError(res.code, res.message);
        return;
      }
      const changed = res.room !== state.room;
      state.room = res.room;
      state.nick = res.nick;
      localStorage.setItem(STORE_NICK, res.nick);
      localStorage.setItem(STORE_ROOM, res.room);
      $("nick").value = res.nick;
      $("room").value = res.room;
      $("room-title").textContent = "#" + res.room;
      document.body.dataset.room = res.room;
      if (changed) state.messages.clear();
      for (const msg of res.history) if (!state.messages.has(msg.id)) state.messages.set(msg.id, msg);
      renderMessages();
      renderMembers(res.members);
      state.typing.clear();
      renderTyping();
      enableSend(true);
      refreshRooms();
    });
  }

  function renderMembers(members) {
    const list = $("members");
    list.replaceChildren(...members.map((nick) => {
      const li = document.createElement("li");
      li.textContent = nick;
      return li;
    }));
  }

  function refreshRooms() {
    socket.emit("rooms", (res) => {
      if (!res || !res.ok) return;
      const list = $("rooms");
      const options = $("room-list");
      list.replaceChildren();
      options.replaceChildren();
      for (const room of res.rooms) {
        const li = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "#" + room.name + " (" + room.members + ")";
        button.addEventListener("click", () => {
          const nick = $("nick").value.trim();
          if (nick) join(room.name, nick);
        });
        li.appendChild(button);
        list.appendChild(li);
        const opt = document.createElement("option");
        opt.value = room.name;
        options.appendChild(opt);
      }
    });
  }

  socket.on("members", (data) => {
    if (data.room === state.room) renderMembers(data.members);
  });

  // -- messages ----------------------------------------------------------------
  function renderMessage(msg) {
    const li = document.createElement("li");
    li.dataset.id = msg.id;
    if (msg.nick === state.nick) li.classList.add("mine");
    if (msg.missed) li.classList.add("missed");
    const time = document.createElement("time");
    const when = new Date(msg.ts);
    time.className = "time";
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    const nick = document.createElement("span");
    nick.className = "nick";
    nick.textContent = msg.nick;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = msg.text;
    li.append(time, nick, text);
    return li;
  }

  function renderMessages() {
    const list = $("messages");
    const sorted = [...state.messages.values()].sort((a, b) => a.id - b.id);
    list.replaceChildren(...sorted.map(renderMessage));
    list.scrollTop = list.scrollHeight;
  }

  socket.on("message", (msg) => {
    if (msg.room !== state.room || state.messages.has(msg.id)) return;
    state.messages.set(msg.id, msg);
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const li = renderMessage(msg);
    if (state.away) { // replayed by a recovering server: missed while we were away
      state.missed += 1;
      li.classList.add("missed");
      msg.missed = true; // stays marked when the list is drawn again (a rejoin's history)
    }
    const last = list.lastElementChild;
    let before = null; // ids give the order: a message older than the last shown goes in its place
    if (last && Number(last.dataset.id) > msg.id) {
      before = [...list.children].find((el) => Number(el.dataset.id) > msg.id) || null;
    }
    list.insertBefore(li, before);
    if (atBottom || msg.nick === state.nick) list.scrollTop = list.scrollHeight;
    state.typing.delete(msg.nick);
    renderTyping();
  });

  socket.on("error", (err) => showError(err && err.code, (err && err.message) || "error"));

  // -- typing ------------------------------------------------------------------
  function renderTyping() {
    const now = Date.now();
    for (const [nick, until] of state.typing) if (until < now) state.typing.delete(nick);
    const nicks = [...state.typing.keys()];
    $("typing").textContent = nicks.length === 0 ? "" :
      nicks.join(", ") + (nicks.length === 1 ? " is typing…" : " are typing…");
  }
  setInterval(renderTyping, 1000);

  socket.on("typing", (data) => {
    if (data.room !== state.room) return;
    if (data.typing) state.typing.set(data.nick, Date.now() + TYPING_SHOWN_MS);
    else state.typing.delete(data.nick);
    renderTyping();
  });

  // -- forms -------------------------------------------------------------------
  function enableSend(on) {
    $("text").disabled = !on;
    $("send").disabled = !on;
  }

  $("nick").value = localStorage.getItem(STORE_NICK) || "";
  $("room").value = localStorage.getItem(STORE_ROOM) || params.get("room") || "lobby";

  $("join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    join($("room").value.trim(), $("nick").value.trim());
  });

  $("text").addEventListener("input", () => {
    const now = Date.now();
    if ($("text").value && now - state.lastTyping > TYPING_SEND_MS) {
      state.lastTyping = now;
      socket.emit("typing", { typing: true });
    }
  });

  $("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("text");
    const text = input.value;
    if (!text.trim()) return;
    socket.emit("message", { text: text }, (res) => {
      if (res && res.ok) {
        input.value = "";
        state.lastTyping = 0;
        socket.emit("typing", { typing: false });
      } else if (res) {
        showError(res.code, res.message);
      }
    });
  });
})();
