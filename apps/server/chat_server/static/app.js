/*
 * Web chat client served at "/" (no build step, no framework).
 *
 * It talks to the public contract only: REST under /api/v1 and socket.io
 * (protocol v5, path /socket.io/) with the client in /static/vendor/.
 * It is written for a strict CSP (default-src 'self'): no inline script,
 * no inline handlers, no eval; all DOM is built with textContent.
 *
 * Stable selectors for browser tests
 * ----------------------------------
 * Login view ........ #auth-view
 *   #username, #password, #display-name (optional, used by Register)
 *   #register   registers the account (stays on the form, shows #auth-status)
 *   #login      logs in (also the form's submit, so Enter works)
 *   #auth-status  text of the last auth result / error
 * App view .......... #app-view
 *   #conn-state  data-state="online" | "connecting" | "offline"
 *   #me          the logged-in username;  #logout  logs out
 *   #new-room-name + #create-room     create a group room (opens it)
 *   #direct-search + #start-direct    open a direct chat with a username
 *   #room-list > li.room[data-room-id][data-testid="room"]
 *        .room-name, .room-preview, .badge.unread[data-testid="unread"] (hidden at 0)
 *        li.room.active is the open room
 * Open room ......... #room-view
 *   #room-title, #room-members (span.member[data-user-id], .presence.online when online)
 *   #member-search + #add-member      add a member by exact username
 *   #leave-room, #load-older, #typing ("alice is typing…")
 *   #messages > .message[data-seq][data-id][data-status]
 *        data-seq is "" while pending; .message.own for the caller's own messages
 *        .message.pending (sent, waiting for message:new), .message.failed
 *        .message.deleted (body shows "message deleted")
 *        .body, .sender, .time, .ticks (✓ stored, ✓✓ delivered, .ticks.read = blue ✓✓)
 *        .edit / .delete buttons on own messages
 *   #composer (textarea: Enter sends, Shift+Enter new line), #send
 * #toast   error toast (API error message)
 */
(function () {
  "use strict";

  const API = "/api/v1";
  const TOKEN_KEY = "chat.token";
  const USER_KEY = "chat.user";
  const PAGE = 50;
  const SYNC_LIMIT = 200;

  // ---------------------------------------------------------------- state
  const state = {
    token: null,
    me: null,               // user object
    socket: null,
    everConnected: false,
    rooms: [],              // summaries from GET /rooms, server order
    details: new Map(),     // room_id -> room with members
    usernames: new Map(),   // user_id -> username
    online: new Set(),      // user_ids
    rs: new Map(),          // room_id -> RoomState (rooms opened this session)
    current: null,          // open room id
  };

  // Per-room message state.
  function newRoomState(id) {
    return {
      id,
      bySeq: new Map(),     // seq -> message
      byId: new Map(),      // id -> message
      firstSeq: null,       // smallest seq loaded
      contigSeq: null,      // all seqs from firstSeq..contigSeq are loaded (null while loading)
      maxSeq: 0,
      hasOlder: false,
      loadingOlder: false,
      syncing: false,
      resync: false,
      pending: new Map(),   // client_msg_id -> {cid, body, id, el, failed}
      receipts: new Map(),  // user_id -> {delivered_seq, read_seq}
      readSent: 0,
      typing: new Map(),    // user_id -> timeout handle
    };
  }

  // ---------------------------------------------------------------- dom
  const $ = (id) => document.getElementById(id);
  const el = {};
  [
    "auth-view", "auth-form", "username", "password", "display-name", "login", "register",
    "auth-status", "app-view", "conn-state", "me", "logout", "new-room-form", "new-room-name",
    "direct-form", "direct-search", "direct-suggestions", "room-list", "no-rooms", "no-room",
    "room-view", "back", "room-title", "room-members", "add-member-form", "member-search",
    "member-suggestions", "leave-room", "message-scroll", "load-older", "messages", "typing",
    "composer-form", "composer", "send", "toast",
  ].forEach((id) => { el[id.replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = $(id); });

  function h(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }

  let toastTimer = null;
  function toast(message, kind) {
    el.toast.textContent = message;
    el.toast.dataset.kind = kind || "error";
    el.toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.toast.hidden = true; }, 5000);
  }
  el.toast.addEventListener("click", () => { el.toast.hidden = true; });

  function uuid() {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    // crypto.randomUUID needs a secure context; plain http on a LAN address has none.
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const x = Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
    return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
  }

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d)) return "";
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    const t = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return sameDay ? t : `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${t}`;
  }

  function nameOf(userId) {
    if (state.me && userId === state.me.id) return state.me.username;
    return state.usernames.get(userId) || "someone";
  }

  // ---------------------------------------------------------------- REST
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body, opts) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (state.token && !(opts && opts.noAuth)) headers.Authorization = `Bearer ${state.token}`;
    let res;
    try {
      res = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, "network_error", "Cannot reach the server.");
    }
    if (res.status === 204) return null;
    let data = null;
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!res.ok) {
      const err = (data && data.error) || {};
      const e = new ApiError(res.status, err.code || `http_${res.status}`, err.message || `${res.status} ${res.statusText}`);
      if (res.status === 401 && state.token && !(opts && opts.noAuth)) {
        logout("Your session has ended. Please log in again.");
      }
      throw e;
    }
    return data;
  }

  // Run an async UI action and show its error in the toast.
  function guarded(fn) {
    return async (...args) => {
      try {
        return await fn(...args);
      } catch (e) {
        if (e instanceof ApiError && e.status === 401 && !state.token) return undefined;
        toast(e && e.message ? e.message : String(e));
        return undefined;
      }
    };
  }

  // ---------------------------------------------------------------- auth
  function showAuth(message) {
    el.appView.hidden = true;
    el.authView.hidden = false;
    el.authStatus.textContent = message || "";
    el.authStatus.dataset.kind = message ? "error" : "";
    (el.username.value ? el.password : el.username).focus();
  }

  function credentials() {
    return { username: el.username.value.trim().toLowerCase(), password: el.password.value };
  }

  function setAuthBusy(busy) {
    el.login.disabled = busy;
    el.register.disabled = busy;
  }

  el.register.addEventListener("click", async () => {
    const { username, password } = credentials();
    const body = { username, password };
    const dn = el.displayName.value.trim();
    if (dn) body.display_name = dn;
    setAuthBusy(true);
    try {
      const data = await api("POST", "/auth/register", body, { noAuth: true });
      el.authStatus.textContent = `Account "${data.user.username}" created. You can log in now.`;
      el.authStatus.dataset.kind = "ok";
    } catch (e) {
      el.authStatus.textContent = e.message;
      el.authStatus.dataset.kind = "error";
    } finally {
      setAuthBusy(false);
    }
  });

  el.authForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setAuthBusy(true);
    try {
      const data = await api("POST", "/auth/login", credentials(), { noAuth: true });
      sessionStorage.setItem(TOKEN_KEY, data.access_token);
      sessionStorage.setItem(USER_KEY, JSON.stringify(data.user));
      el.password.value = "";
      el.authStatus.textContent = "";
      startSession(data.access_token, data.user);
    } catch (e) {
      el.authStatus.textContent = e.message;
      el.authStatus.dataset.kind = "error";
    } finally {
      setAuthBusy(false);
    }
  });

  el.logout.addEventListener("click", () => logout());

  function logout(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
    if (state.socket) {
      state.socket.removeAllListeners();
      state.socket.disconnect();
    }
    for (const rs of state.rs.values()) rs.typing.forEach((t) => clearTimeout(t));
    Object.assign(state, {
      token: null, me: null, socket: null, everConnected: false, rooms: [],
      details: new Map(), usernames: new Map(), online: new Set(), rs: new Map(), current: null,
    });
    stopTyping();
    detailsAsked.clear();
    el.roomList.replaceChildren();
    el.messages.replaceChildren();
    el.roomView.hidden = true;
    el.noRoom.hidden = false;
    document.body.classList.remove("room-open");
    showAuth(message);
  }

  function startSession(token, user) {
    state.token = token;
    state.me = user;
    state.usernames.set(user.id, user.username);
    el.me.textContent = user.display_name && user.display_name !== user.username
      ? `${user.display_name} (@${user.username})` : `@${user.username}`;
    el.me.dataset.userId = user.id;
    el.authView.hidden = true;
    el.appView.hidden = false;
    connectSocket();
    refreshRooms();
  }

  // ---------------------------------------------------------------- socket
  function setConn(s, label) {
    el.connState.dataset.state = s;
    el.connState.textContent = label || s;
  }

  function connectSocket() {
    if (typeof window.io !== "function") {
      setConn("offline", "no socket.io client");
      toast("The socket.io client did not load.");
      return;
    }
    setConn("connecting", "connecting…");
    const socket = window.io({ transports: ["websocket"], auth: { token: state.token }, forceNew: true });
    state.socket = socket;

    socket.on("connect", () => {
      setConn("online");
      state.online.add(state.me.id);
      updatePresence();
      if (state.everConnected) {
        // A reconnect: catch up every room we hold messages for.
        for (const rs of state.rs.values()) if (rs.contigSeq !== null) syncRoom(rs);
        refreshRooms();
        if (state.current) refreshDetails(state.current);
      }
      state.everConnected = true;
    });
    socket.on("disconnect", (reason) => {
      setConn("offline", reason === "io client disconnect" ? "offline" : "reconnecting…");
      state.online.delete(state.me && state.me.id);
      updatePresence();
    });
    socket.on("connect_error", (err) => {
      if (err && err.message === "unauthorized") {
        logout("Your session has ended. Please log in again.");
        return;
      }
      setConn("offline", "reconnecting…");
    });
    socket.io.on("reconnect_attempt", () => setConn("connecting", "reconnecting…"));

    socket.on("message:new", onMessageNew);
    socket.on("message:updated", onMessageUpdated);
    socket.on("message:deleted", onMessageDeleted);
    socket.on("receipt", onReceipt);
    socket.on("typing", onTyping);
    socket.on("presence", onPresence);
    socket.on("room:member_added", onMemberAdded);
    socket.on("room:member_removed", onMemberRemoved);
  }

  // emit with an ack; resolves to the ack payload, rejects on timeout/error ack.
  function emitAck(event, payload, timeoutMs) {
    return new Promise((resolve, reject) => {
      const s = state.socket;
      if (!s) { reject(new Error("Not connected.")); return; }
      s.timeout(timeoutMs || 15000).emit(event, payload, (err, ack) => {
        if (err) { reject(new Error(`No answer from the server (${event}).`)); return; }
        if (ack && ack.ok === false) {
          const e = (ack.error && ack.error.message) || "Request refused.";
          reject(new ApiError(0, (ack.error && ack.error.code) || "error", e));
          return;
        }
        resolve(ack || {});
      });
    });
  }

  function emitQuiet(event, payload) {
    if (state.socket && state.socket.connected) emitAck(event, payload).catch(() => {});
  }

  // ---------------------------------------------------------------- rooms list
  let roomsTimer = null;
  const detailsAsked = new Set(); // room ids whose members we already fetched for the list
  function scheduleRooms() {
    clearTimeout(roomsTimer);
    roomsTimer = setTimeout(refreshRooms, 250);
  }

  const refreshRooms = guarded(async () => {
    if (!state.token) return;
    const data = await api("GET", "/rooms");
    state.rooms = data.rooms || [];
    renderRooms();
    // Direct rooms are named after the other member: fetch members where unknown.
    // Group rooms: only when the last sender's name is unknown (for the preview).
    for (const r of state.rooms) {
      if (state.details.has(r.id) || detailsAsked.has(r.id)) continue;
      const lm = r.last_message;
      if (r.kind === "direct" || (lm && !state.usernames.has(lm.sender_id))) {
        detailsAsked.add(r.id);
        refreshDetails(r.id, true);
      }
    }
  });

  function roomTitle(room) {
    if (room.kind === "direct") {
      const other = otherMember(room.id);
      return other ? other.username : (room.name || "direct chat");
    }
    return room.name || "untitled";
  }

  function otherMember(roomId) {
    const d = state.details.get(roomId);
    if (!d || !d.members || !state.me) return null;
    return d.members.find((m) => m.user_id !== state.me.id) || null;
  }

  function renderRooms() {
    const frag = document.createDocumentFragment();
    for (const r of state.rooms) {
      const li = h("li", "room");
      li.dataset.roomId = r.id;
      li.dataset.testid = "room";
      li.tabIndex = 0;
      li.setAttribute("role", "button");
      if (r.id === state.current) li.classList.add("active");

      const top = h("div", "room-top");
      const nameWrap = h("span", "room-name-wrap");
      if (r.kind === "direct") {
        const other = otherMember(r.id);
        const dot = h("span", "presence");
        if (other) {
          dot.dataset.presenceUser = other.user_id;
          if (state.online.has(other.user_id)) dot.classList.add("online");
        }
        nameWrap.append(dot);
      } else {
        nameWrap.append(h("span", "room-icon", "#"));
      }
      nameWrap.append(h("span", "room-name", roomTitle(r)));
      top.append(nameWrap);

      const lm = r.last_message;
      if (lm) top.append(h("span", "room-time", fmtTime(lm.created_at)));
      li.append(top);

      const bottom = h("div", "room-bottom");
      let preview = "No messages yet";
      if (lm) {
        const body = lm.deleted ? "message deleted" : (lm.body || "");
        const who = state.me && lm.sender_id === state.me.id ? "You: "
          : (r.kind === "group" && state.usernames.has(lm.sender_id) ? `${state.usernames.get(lm.sender_id)}: ` : "");
        preview = who + body;
      }
      bottom.append(h("span", "room-preview", preview));
      let unread = r.unread_count || 0;
      if (r.id === state.current && document.visibilityState === "visible") unread = 0;
      const badge = h("span", "badge unread", unread > 99 ? "99+" : String(unread));
      badge.dataset.testid = "unread";
      badge.dataset.count = String(unread);
      badge.hidden = unread === 0;
      bottom.append(badge);
      li.append(bottom);
      frag.append(li);
    }
    el.roomList.replaceChildren(frag);
    el.noRooms.hidden = state.rooms.length > 0;
  }

  function onRoomActivate(ev) {
    const li = ev.target.closest("li.room");
    if (li) openRoom(li.dataset.roomId);
  }
  el.roomList.addEventListener("click", onRoomActivate);
  el.roomList.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); onRoomActivate(ev); }
  });

  async function refreshDetails(roomId, quiet) {
    try {
      const data = await api("GET", `/rooms/${encodeURIComponent(roomId)}`);
      const room = data.room;
      state.details.set(roomId, room);
      for (const m of room.members || []) state.usernames.set(m.user_id, m.username);
      renderRooms();
      if (roomId === state.current) renderRoomHeader();
      return room;
    } catch (e) {
      if (!quiet) toast(e.message);
      return null;
    }
  }

  // ---------------------------------------------------------------- user search
  const userCache = new Map(); // username -> user
  function attachUserSearch(input, datalist) {
    let t = null;
    let seq = 0;
    input.addEventListener("input", () => {
      clearTimeout(t);
      const q = input.value.trim().toLowerCase();
      if (!q) { datalist.replaceChildren(); return; }
      t = setTimeout(async () => {
        const mine = ++seq;
        try {
          const data = await api("GET", `/users?q=${encodeURIComponent(q)}`);
          if (mine !== seq) return;
          const opts = [];
          for (const u of data.users || []) {
            userCache.set(u.username, u);
            state.usernames.set(u.id, u.username);
            if (state.me && u.id === state.me.id) continue;
            const o = document.createElement("option");
            o.value = u.username;
            if (u.display_name && u.display_name !== u.username) o.label = u.display_name;
            opts.push(o);
          }
          datalist.replaceChildren(...opts);
        } catch (e) { /* suggestions are best-effort */ }
      }, 200);
    });
  }
  attachUserSearch(el.memberSearch, el.memberSuggestions);
  attachUserSearch(el.directSearch, el.directSuggestions);

  async function findUser(username) {
    const q = username.trim().toLowerCase().replace(/^@/, "");
    if (!q) throw new Error("Type a username.");
    const data = await api("GET", `/users?q=${encodeURIComponent(q)}`);
    const u = (data.users || []).find((x) => x.username.toLowerCase() === q);
    if (!u) throw new Error(`No user "${q}".`);
    state.usernames.set(u.id, u.username);
    return u;
  }

  // ---------------------------------------------------------------- create / add
  el.newRoomForm.addEventListener("submit", guarded(async (ev) => {
    ev.preventDefault();
    const name = el.newRoomName.value.trim();
    if (!name) { toast("Give the room a name."); return; }
    const data = await api("POST", "/rooms", { name, member_ids: [] });
    el.newRoomName.value = "";
    await refreshRooms();
    openRoom(data.room.id);
  }));

  el.directForm.addEventListener("submit", guarded(async (ev) => {
    ev.preventDefault();
    const u = await findUser(el.directSearch.value);
    if (state.me && u.id === state.me.id) throw new Error("That is you.");
    const data = await api("POST", "/rooms", { kind: "direct", member_ids: [u.id] });
    el.directSearch.value = "";
    el.directSuggestions.replaceChildren();
    await refreshDetails(data.room.id, true);
    await refreshRooms();
    openRoom(data.room.id);
  }));

  el.addMemberForm.addEventListener("submit", guarded(async (ev) => {
    ev.preventDefault();
    const roomId = state.current;
    if (!roomId) return;
    const u = await findUser(el.memberSearch.value);
    await api("POST", `/rooms/${encodeURIComponent(roomId)}/members`, { user_id: u.id });
    el.memberSearch.value = "";
    el.memberSuggestions.replaceChildren();
    toast(`${u.username} is in the room.`, "ok");
    await refreshDetails(roomId);
    loadReceipts(roomId);
  }));

  el.leaveRoom.addEventListener("click", guarded(async () => {
    const roomId = state.current;
    if (!roomId || !state.me) return;
    const d = state.details.get(roomId);
    if (!window.confirm(`Leave "${d ? roomTitle(d) : "this room"}"?`)) return;
    await api("DELETE", `/rooms/${encodeURIComponent(roomId)}/members/${encodeURIComponent(state.me.id)}`);
    forgetRoom(roomId);
    refreshRooms();
  }));

  function forgetRoom(roomId) {
    const rs = state.rs.get(roomId);
    if (rs) rs.typing.forEach((t) => clearTimeout(t));
    state.rs.delete(roomId);
    state.details.delete(roomId);
    state.rooms = state.rooms.filter((r) => r.id !== roomId);
    if (state.current === roomId) closeRoom();
    renderRooms();
  }

  // ---------------------------------------------------------------- open a room
  function closeRoom() {
    stopTyping();
    state.current = null;
    el.roomView.hidden = true;
    el.noRoom.hidden = false;
    el.messages.replaceChildren();
    document.body.classList.remove("room-open");
    renderRooms();
  }
  el.back.addEventListener("click", closeRoom);

  let openToken = 0;
  async function openRoom(roomId) {
    if (!roomId) return;
    if (state.current !== roomId) stopTyping();
    const mine = ++openToken;
    state.current = roomId;
    el.noRoom.hidden = true;
    el.roomView.hidden = false;
    document.body.classList.add("room-open");
    el.composer.value = "";
    autosize();
    renderRooms();
    renderRoomHeader();
    el.messages.replaceChildren();
    renderTyping();

    let rs = state.rs.get(roomId);
    if (rs && rs.contigSeq !== null) {
      // Already loaded this session: show what we hold and catch up.
      renderAllMessages(rs, true);
      refreshDetails(roomId, true);
      loadReceipts(roomId);
      syncRoom(rs).then(() => markRead(rs));
      focusComposer();
      return;
    }
    if (!rs) { rs = newRoomState(roomId); state.rs.set(roomId, rs); }

    try {
      const [room, page] = await Promise.all([
        refreshDetails(roomId),
        api("GET", `/rooms/${encodeURIComponent(roomId)}/messages?limit=${PAGE}`),
      ]);
      if (!room) { state.rs.delete(roomId); if (mine === openToken) closeRoom(); return; }
      for (const m of page.messages || []) addMessage(rs, m, false);
      rs.hasOlder = !!page.has_more;
      let top = 0;
      for (const m of page.messages || []) if (m.seq != null) top = Math.max(top, m.seq);
      rs.contigSeq = top;
      if (rs.firstSeq === null) rs.firstSeq = top ? (page.messages[0].seq) : 1;
      advanceContig(rs);
      await loadReceipts(roomId);
      if (mine !== openToken || state.current !== roomId) return;
      renderAllMessages(rs, true);
      if (rs.maxSeq > rs.contigSeq) syncRoom(rs);
      if (rs.maxSeq > 0) emitQuiet("delivered", { room_id: roomId, seq: rs.maxSeq });
      markRead(rs);
      focusComposer();
    } catch (e) {
      if (rs.contigSeq === null) state.rs.delete(roomId);
      toast(e.message);
    }
  }

  // Opening a room loads it asynchronously; by the time it is loaded the person may
  // already be typing elsewhere (the member box, the room search): never take that away.
  function focusComposer() {
    const a = document.activeElement;
    const busy = a && a !== el.composer && a.matches("input, textarea, select");
    if (!busy) el.composer.focus();
  }

  function renderRoomHeader() {
    const roomId = state.current;
    if (!roomId) return;
    const d = state.details.get(roomId) || state.rooms.find((r) => r.id === roomId);
    el.roomTitle.textContent = d ? roomTitle(d) : "";
    const isDirect = d && d.kind === "direct";
    el.addMemberForm.hidden = !!isDirect;
    const members = (d && d.members) || [];
    const frag = document.createDocumentFragment();
    members
      .slice()
      .sort((a, b) => a.username.localeCompare(b.username))
      .forEach((m) => {
        const s = h("span", "member");
        s.dataset.userId = m.user_id;
        const dot = h("span", "presence");
        dot.dataset.presenceUser = m.user_id;
        if (state.online.has(m.user_id)) dot.classList.add("online");
        s.append(dot, h("span", "member-name", m.username + (state.me && m.user_id === state.me.id ? " (you)" : "")));
        if (m.role === "owner") s.append(h("span", "role", "owner"));
        frag.append(s);
      });
    el.roomMembers.replaceChildren(frag);
  }

  async function loadReceipts(roomId) {
    try {
      const data = await api("GET", `/rooms/${encodeURIComponent(roomId)}/receipts`);
      const rs = state.rs.get(roomId);
      if (!rs) return;
      rs.receipts.clear();
      for (const r of data.receipts || []) {
        rs.receipts.set(r.user_id, { delivered_seq: r.delivered_seq || 0, read_seq: r.read_seq || 0 });
      }
      if (roomId === state.current) updateTicks(rs);
    } catch (e) { /* ticks fall back to message status */ }
  }

  // ---------------------------------------------------------------- message store
  // Returns true when the message was new.
  function addMessage(rs, m, render) {
    if (m.seq == null) return false;
    const existing = rs.byId.get(m.id) || rs.bySeq.get(m.seq);
    if (existing) {
      // Keep the freshest copy (an edit or a delete may have come first).
      if (m.edited_at && (!existing.edited_at || m.edited_at > existing.edited_at)) Object.assign(existing, m);
      if (m.deleted) existing.deleted = true;
      return false;
    }
    rs.bySeq.set(m.seq, m);
    rs.byId.set(m.id, m);
    rs.maxSeq = Math.max(rs.maxSeq, m.seq);
    if (rs.firstSeq === null || m.seq < rs.firstSeq) rs.firstSeq = m.seq;
    // Our own pending copy is done.
    if (m.client_msg_id && state.me && m.sender_id === state.me.id) {
      const p = rs.pending.get(m.client_msg_id);
      if (p) {
        rs.pending.delete(m.client_msg_id);
        if (p.el) p.el.remove();
      }
    }
    for (const [cid, p] of rs.pending) {
      if (p.id && p.id === m.id) { rs.pending.delete(cid); if (p.el) p.el.remove(); }
    }
    if (render && rs.id === state.current) insertMessageEl(rs, m);
    return true;
  }

  function advanceContig(rs) {
    if (rs.contigSeq === null) return;
    while (rs.bySeq.has(rs.contigSeq + 1)) rs.contigSeq += 1;
  }

  // Fetch everything after contigSeq, page by page, until caught up.
  async function syncRoom(rs) {
    if (rs.contigSeq === null) return;
    if (rs.syncing) { rs.resync = true; return; }
    rs.syncing = true;
    try {
      let guard = 0;
      do {
        rs.resync = false;
        const ack = await emitAck("sync", { room_id: rs.id, after_seq: rs.contigSeq, limit: SYNC_LIMIT });
        const msgs = (ack.messages || []).slice().sort((a, b) => a.seq - b.seq);
        let fresh = 0;
        for (const m of msgs) if (addMessage(rs, m, true)) fresh += 1;
        if (msgs.length) {
          // The server answered everything up to its last message: no gap below it.
          const last = msgs[msgs.length - 1].seq;
          if (last > rs.contigSeq) rs.contigSeq = Math.max(rs.contigSeq, last);
        }
        advanceContig(rs);
        if (fresh) {
          const mine = msgs.filter((m) => state.me && m.sender_id !== state.me.id);
          if (mine.length) emitQuiet("delivered", { room_id: rs.id, seq: rs.maxSeq });
        }
        if (ack.has_more) rs.resync = true;
        else if (rs.maxSeq > rs.contigSeq && msgs.length === 0) break; // nothing to fill with
        guard += 1;
      } while (rs.resync && guard < 50);
      if (rs.id === state.current) { updateTicks(rs); markRead(rs); }
    } catch (e) {
      // Will retry on the next gap or reconnect.
    } finally {
      rs.syncing = false;
    }
  }

  // ---------------------------------------------------------------- rendering messages
  function nearBottom() {
    const s = el.messageScroll;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }
  function scrollToBottom() {
    el.messageScroll.scrollTop = el.messageScroll.scrollHeight;
  }

  function renderAllMessages(rs, toBottom) {
    const frag = document.createDocumentFragment();
    const seqs = Array.from(rs.bySeq.keys()).sort((a, b) => a - b);
    for (const s of seqs) frag.append(messageEl(rs, rs.bySeq.get(s)));
    for (const p of rs.pending.values()) {
      p.el = pendingEl(p);
      frag.append(p.el);
    }
    el.messages.replaceChildren(frag);
    el.loadOlder.hidden = !rs.hasOlder;
    if (toBottom) scrollToBottom();
  }

  function insertMessageEl(rs, m) {
    const stick = nearBottom() || (state.me && m.sender_id === state.me.id);
    const node = messageEl(rs, m);
    let before = null;
    for (const c of el.messages.children) {
      if (c.classList.contains("pending")) { before = before || c; break; }
      const s = Number(c.dataset.seq);
      if (c.dataset.seq !== "" && s > m.seq) { before = c; break; }
    }
    el.messages.insertBefore(node, before);
    if (stick) scrollToBottom();
  }

  function replaceMessageEl(rs, m) {
    if (rs.id !== state.current) return;
    const old = el.messages.querySelector(`.message[data-id="${cssEscape(m.id)}"]`);
    if (old) old.replaceWith(messageEl(rs, m));
  }

  function cssEscape(s) {
    return window.CSS && CSS.escape ? CSS.escape(s) : String(s).replace(/["\\]/g, "\\$&");
  }

  function messageEl(rs, m) {
    const own = state.me && m.sender_id === state.me.id;
    const node = h("div", "message" + (own ? " own" : "") + (m.deleted ? " deleted" : ""));
    node.dataset.seq = String(m.seq);
    node.dataset.id = m.id;
    node.dataset.testid = "message";

    const bubble = h("div", "bubble");
    const meta = h("div", "meta");
    if (!own) meta.append(h("span", "sender", nameOf(m.sender_id)));
    bubble.append(meta);
    bubble.append(h("div", "body", m.deleted ? "message deleted" : m.body));

    const foot = h("div", "foot");
    if (m.edited_at && !m.deleted) foot.append(h("span", "edited", "edited"));
    const time = h("time", "time", fmtTime(m.created_at));
    if (m.created_at) time.dateTime = m.created_at;
    foot.append(time);
    if (own) {
      const ticks = h("span", "ticks");
      setTicks(ticks, node, statusOf(rs, m));
      foot.append(ticks);
    }
    bubble.append(foot);
    node.append(bubble);

    if (own && !m.deleted) {
      const actions = h("div", "actions");
      const edit = h("button", "edit subtle", "edit");
      edit.type = "button";
      edit.dataset.action = "edit";
      const del = h("button", "delete subtle", "delete");
      del.type = "button";
      del.dataset.action = "delete";
      actions.append(edit, del);
      node.append(actions);
    } else if (!m.deleted && isOwner(rs.id)) {
      const actions = h("div", "actions");
      const del = h("button", "delete subtle", "delete");
      del.type = "button";
      del.dataset.action = "delete";
      actions.append(del);
      node.append(actions);
    }
    return node;
  }

  function isOwner(roomId) {
    const d = state.details.get(roomId);
    if (!d || !d.members || !state.me) return false;
    const me = d.members.find((x) => x.user_id === state.me.id);
    return !!me && me.role === "owner" && d.kind === "group";
  }

  function pendingEl(p) {
    const node = h("div", "message own pending" + (p.failed ? " failed" : ""));
    node.dataset.seq = "";
    node.dataset.id = "";
    node.dataset.clientMsgId = p.cid;
    node.dataset.status = p.failed ? "failed" : "pending";
    node.dataset.testid = "message";
    const bubble = h("div", "bubble");
    bubble.append(h("div", "body", p.body));
    const foot = h("div", "foot");
    if (p.failed) {
      foot.append(h("span", "error-text", p.failed));
      const retry = h("button", "subtle", "retry");
      retry.type = "button";
      retry.dataset.action = "retry";
      const drop = h("button", "subtle", "discard");
      drop.type = "button";
      drop.dataset.action = "discard";
      foot.append(retry, drop);
    } else {
      foot.append(h("span", "ticks pending-clock", "🕓"));
    }
    bubble.append(foot);
    node.append(bubble);
    return node;
  }

  // ---------------------------------------------------------------- ticks
  const RANK = { accepted: 0, stored: 1, delivered: 2, read: 3 };
  function statusOf(rs, m) {
    let computed = 1;
    const d = state.details.get(rs.id);
    const others = d && d.members ? d.members.filter((x) => x.user_id !== m.sender_id) : null;
    if (others && others.length && rs.receipts.size) {
      let allDelivered = true;
      let allRead = true;
      for (const o of others) {
        const r = rs.receipts.get(o.user_id) || { delivered_seq: 0, read_seq: 0 };
        const del = Math.max(r.delivered_seq || 0, r.read_seq || 0);
        if (del < m.seq) allDelivered = false;
        if ((r.read_seq || 0) < m.seq) allRead = false;
      }
      computed = allRead ? 3 : allDelivered ? 2 : 1;
    }
    const given = RANK[m.status] !== undefined ? RANK[m.status] : 1;
    const r = Math.max(computed, given);
    return r >= 3 ? "read" : r === 2 ? "delivered" : "stored";
  }

  function setTicks(ticksEl, node, status) {
    ticksEl.textContent = status === "stored" ? "✓" : "✓✓";
    ticksEl.classList.toggle("read", status === "read");
    ticksEl.title = status;
    node.dataset.status = status;
  }

  function updateTicks(rs) {
    if (rs.id !== state.current) return;
    for (const node of el.messages.querySelectorAll(".message.own[data-id]")) {
      const m = rs.byId.get(node.dataset.id);
      const t = node.querySelector(".ticks");
      if (m && t) setTicks(t, node, statusOf(rs, m));
    }
  }

  // ---------------------------------------------------------------- socket events
  function onMessageNew(m) {
    if (!m || !m.room_id) return;
    if (state.me && m.sender_id !== state.me.id && m.seq != null) {
      emitQuiet("delivered", { room_id: m.room_id, seq: m.seq });
    }
    const rs = state.rs.get(m.room_id);
    if (rs) {
      const expectGap = rs.contigSeq !== null && m.seq > rs.contigSeq + 1;
      addMessage(rs, m, true);
      advanceContig(rs);
      if (expectGap && rs.contigSeq < m.seq) syncRoom(rs);
      clearTypingOf(rs, m.sender_id);
      if (m.room_id === state.current) markRead(rs);
    }
    // Cheap local update of the list, then the authoritative one.
    const r = state.rooms.find((x) => x.id === m.room_id);
    if (r) {
      r.last_message = m;
      if (state.me && m.sender_id !== state.me.id && !(m.room_id === state.current && document.visibilityState === "visible")) {
        r.unread_count = (r.unread_count || 0) + 1;
      }
      state.rooms = [r].concat(state.rooms.filter((x) => x !== r));
      renderRooms();
    }
    scheduleRooms();
  }

  function onMessageUpdated(m) {
    if (!m || !m.room_id) return;
    const rs = state.rs.get(m.room_id);
    if (rs) {
      const existing = rs.byId.get(m.id);
      if (existing) {
        Object.assign(existing, m);
        replaceMessageEl(rs, existing);
      } else if (m.seq != null) {
        addMessage(rs, m, true);
        advanceContig(rs);
      }
    }
    scheduleRooms();
  }

  function onMessageDeleted(p) {
    if (!p || !p.room_id) return;
    const rs = state.rs.get(p.room_id);
    if (rs) {
      const m = rs.byId.get(p.id) || (p.seq != null ? rs.bySeq.get(p.seq) : null);
      if (m) {
        m.deleted = true;
        m.body = "";
        replaceMessageEl(rs, m);
      }
    }
    scheduleRooms();
  }

  function onReceipt(p) {
    if (!p || !p.room_id) return;
    const rs = state.rs.get(p.room_id);
    if (!rs) return;
    const r = rs.receipts.get(p.user_id) || { delivered_seq: 0, read_seq: 0 };
    if (p.kind === "read") {
      r.read_seq = Math.max(r.read_seq || 0, p.seq || 0);
      r.delivered_seq = Math.max(r.delivered_seq || 0, r.read_seq);
    } else {
      r.delivered_seq = Math.max(r.delivered_seq || 0, p.seq || 0);
    }
    rs.receipts.set(p.user_id, r);
    updateTicks(rs);
  }

  function onPresence(p) {
    if (!p || !p.user_id) return;
    if (p.online) state.online.add(p.user_id);
    else state.online.delete(p.user_id);
    updatePresence();
  }

  function updatePresence() {
    for (const dot of document.querySelectorAll(".presence[data-presence-user]")) {
      dot.classList.toggle("online", state.online.has(dot.dataset.presenceUser));
      dot.title = state.online.has(dot.dataset.presenceUser) ? "online" : "offline";
    }
  }

  function onMemberAdded(p) {
    if (!p || !p.room_id) return;
    if (state.details.has(p.room_id) || p.room_id === state.current) {
      refreshDetails(p.room_id, true).then(() => {
        if (p.room_id === state.current) loadReceipts(p.room_id);
      });
    }
    scheduleRooms();
  }

  function onMemberRemoved(p) {
    if (!p || !p.room_id) return;
    if (state.me && p.user_id === state.me.id) {
      if (p.room_id === state.current) toast("You are no longer in this room.", "ok");
      forgetRoom(p.room_id);
    } else if (state.details.has(p.room_id)) {
      refreshDetails(p.room_id, true).then(() => {
        const rs = state.rs.get(p.room_id);
        if (rs) updateTicks(rs);
      });
    }
    scheduleRooms();
  }

  // ---------------------------------------------------------------- typing (others)
  function onTyping(p) {
    if (!p || !p.room_id || (state.me && p.user_id === state.me.id)) return;
    let rs = state.rs.get(p.room_id);
    if (!rs) return;
    clearTimeout(rs.typing.get(p.user_id));
    if (p.is_typing) {
      rs.typing.set(p.user_id, setTimeout(() => { clearTypingOf(rs, p.user_id); }, 5000));
    } else {
      rs.typing.delete(p.user_id);
    }
    if (p.room_id === state.current) renderTyping();
  }

  function clearTypingOf(rs, userId) {
    if (!rs.typing.has(userId)) return;
    clearTimeout(rs.typing.get(userId));
    rs.typing.delete(userId);
    if (rs.id === state.current) renderTyping();
  }

  function renderTyping() {
    const rs = state.current && state.rs.get(state.current);
    const names = rs ? Array.from(rs.typing.keys()).map(nameOf) : [];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "several people are typing…";
    el.typing.textContent = text;
  }

  // ---------------------------------------------------------------- typing (me)
  let typingRoom = null;
  let typingSentAt = 0;
  let typingIdle = null;

  function noteTyping() {
    const roomId = state.current;
    if (!roomId) return;
    if (!el.composer.value.trim()) { stopTyping(); return; }
    const now = Date.now();
    if (typingRoom !== roomId || now - typingSentAt > 2000) {
      if (typingRoom && typingRoom !== roomId) stopTyping();
      typingRoom = roomId;
      typingSentAt = now;
      emitQuiet("typing", { room_id: roomId, is_typing: true });
    }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, 3000);
  }

  function stopTyping() {
    clearTimeout(typingIdle);
    typingIdle = null;
    if (typingRoom) {
      emitQuiet("typing", { room_id: typingRoom, is_typing: false });
      typingRoom = null;
      typingSentAt = 0;
    }
  }

  // ---------------------------------------------------------------- read receipts
  function markRead(rs) {
    if (!rs || rs.id !== state.current || document.visibilityState !== "visible") return;
    const seq = rs.maxSeq;
    if (seq > rs.readSent) {
      rs.readSent = seq;
      emitAck("read", { room_id: rs.id, seq })
        .then(() => {
          const r = state.rooms.find((x) => x.id === rs.id);
          if (r && r.unread_count) { r.unread_count = 0; renderRooms(); }
        })
        .catch(() => { rs.readSent = Math.min(rs.readSent, seq - 1); });
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.current) {
      markRead(state.rs.get(state.current));
      renderRooms();
    } else {
      stopTyping();
    }
  });

  // ---------------------------------------------------------------- composer
  function autosize() {
    el.composer.style.height = "auto";
    const full = el.composer.scrollHeight;
    el.composer.style.height = Math.min(full, 160) + "px";
    el.composer.style.overflowY = full > 160 ? "auto" : "hidden";
  }

  el.composer.addEventListener("input", () => { autosize(); noteTyping(); });
  el.composer.addEventListener("blur", stopTyping);
  el.composer.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      sendFromComposer();
    }
  });
  el.composerForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    sendFromComposer();
  });

  function sendFromComposer() {
    const roomId = state.current;
    const body = el.composer.value.trim();
    if (!roomId || !body) return;
    if (body.length > 4000) { toast("A message is at most 4000 characters."); return; }
    const rs = state.rs.get(roomId);
    if (!rs) { toast("The room is still loading."); return; }
    el.composer.value = "";
    autosize();
    stopTyping();
    const p = { cid: uuid(), body, id: null, el: null, failed: null };
    rs.pending.set(p.cid, p);
    p.el = pendingEl(p);
    el.messages.append(p.el);
    scrollToBottom();
    sendPending(rs, p);
  }

  function sendPending(rs, p) {
    emitAck("message:send", { room_id: rs.id, body: p.body, client_msg_id: p.cid }, 20000)
      .then((ack) => {
        const m = ack.message;
        if (!m) return;
        p.id = m.id;
        // message:new may have arrived before the ack.
        if (rs.byId.has(m.id)) {
          rs.pending.delete(p.cid);
          if (p.el) p.el.remove();
        } else if (m.seq != null) {
          addMessage(rs, m, true);
          advanceContig(rs);
        }
      })
      .catch((e) => {
        if (!rs.pending.has(p.cid)) return;
        p.failed = e.message || "Not sent.";
        if (rs.id === state.current && p.el) {
          const n = pendingEl(p);
          p.el.replaceWith(n);
          p.el = n;
        }
        toast(p.failed);
      });
  }

  // ---------------------------------------------------------------- message actions
  el.messages.addEventListener("click", guarded(async (ev) => {
    const btn = ev.target.closest("button[data-action]");
    if (!btn) return;
    const node = btn.closest(".message");
    const rs = state.rs.get(state.current);
    if (!node || !rs) return;
    const action = btn.dataset.action;

    if (action === "retry" || action === "discard") {
      const p = rs.pending.get(node.dataset.clientMsgId);
      if (!p) return;
      if (action === "discard") { rs.pending.delete(p.cid); node.remove(); return; }
      p.failed = null;
      const n = pendingEl(p);
      node.replaceWith(n);
      p.el = n;
      sendPending(rs, p); // same client_msg_id: the server dedupes
      return;
    }

    const m = rs.byId.get(node.dataset.id);
    if (!m) return;
    const path = `/rooms/${encodeURIComponent(rs.id)}/messages/${encodeURIComponent(m.id)}`;
    if (action === "delete") {
      if (!window.confirm("Delete this message?")) return;
      await api("DELETE", path);
      m.deleted = true;
      m.body = "";
      replaceMessageEl(rs, m);
    } else if (action === "edit") {
      startEdit(rs, m, node, path);
    }
  }));

  function startEdit(rs, m, node, path) {
    const bodyEl = node.querySelector(".body");
    if (!bodyEl || node.classList.contains("editing")) return;
    node.classList.add("editing");
    const form = h("form", "edit-form");
    const input = h("textarea", "edit-input");
    input.value = m.body;
    input.maxLength = 4000;
    input.rows = 2;
    const save = h("button", "primary", "save");
    save.type = "submit";
    const cancel = h("button", "subtle", "cancel");
    cancel.type = "button";
    form.append(input, save, cancel);
    bodyEl.replaceWith(form);
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);

    const done = () => replaceMessageEl(rs, m);
    cancel.addEventListener("click", done);
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") { ev.preventDefault(); done(); }
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", guarded(async (ev) => {
      ev.preventDefault();
      const body = input.value.trim();
      if (!body || body === m.body) { done(); return; }
      const data = await api("PATCH", path, { body });
      Object.assign(m, data.message);
      done();
    }));
  }

  // ---------------------------------------------------------------- older history
  el.loadOlder.addEventListener("click", guarded(async () => {
    const rs = state.rs.get(state.current);
    if (!rs || rs.loadingOlder || !rs.firstSeq) return;
    rs.loadingOlder = true;
    el.loadOlder.disabled = true;
    try {
      const data = await api("GET",
        `/rooms/${encodeURIComponent(rs.id)}/messages?before_seq=${rs.firstSeq}&limit=${PAGE}`);
      if (rs.id !== state.current) return;
      const s = el.messageScroll;
      const fromBottom = s.scrollHeight - s.scrollTop;
      for (const m of data.messages || []) addMessage(rs, m, false);
      rs.hasOlder = !!data.has_more;
      renderAllMessages(rs, false);
      s.scrollTop = s.scrollHeight - fromBottom;
    } finally {
      rs.loadingOlder = false;
      el.loadOlder.disabled = false;
    }
  }));

  // Refresh relative times once a minute (today vs. earlier).
  setInterval(() => {
    for (const t of el.messages.querySelectorAll("time.time[datetime]")) t.textContent = fmtTime(t.dateTime);
  }, 60000);

  // ---------------------------------------------------------------- boot
  async function boot() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) { showAuth(); return; }
    state.token = token;
    try {
      const data = await api("GET", "/users/me");
      sessionStorage.setItem(USER_KEY, JSON.stringify(data.user));
      startSession(token, data.user);
    } catch (e) {
      if (e.status === 401) return; // api() already logged out
      // Server unreachable: keep the token, show the app with the cached user.
      let cached = null;
      try { cached = JSON.parse(sessionStorage.getItem(USER_KEY) || "null"); } catch (_) { cached = null; }
      if (cached) { startSession(token, cached); toast(e.message); }
      else { state.token = null; showAuth(e.message); }
    }
  }

  boot();
})();
