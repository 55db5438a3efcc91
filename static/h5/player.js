// The phone player: WebRTC video of one cloud phone, multi-touch, keys, text and navigation.
// Plain ES module, no build step. Talks the signaling protocol of DESIGN.md §4 on /ws and the
// `input` / `control` / `stats` data channels.
import { mapToVideo, PointerIds } from "./pointer.js";
import { installProbe } from "./probe.js";
import { installSharing } from "./sharing.js";

const params = new URLSearchParams(location.search);
const instance = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
let token = params.get("token") || sessionStorage.getItem("cloudphone.token") || undefined;
// A user who logged in (control plane) gets a connect token for this phone from here.
// An invite link (`cpi_` token) is used as it is, even in a browser where someone logged in.
const invited = (params.get("token") || "").startsWith("cpi_");
const tokenUrl = sessionStorage.getItem("cloudphone.userLogin") && !invited
  ? `/api/v1/me/phones/${encodeURIComponent(instance)}/connect` : null;
const codec = params.get("codec") || "auto";
const role = params.get("role") || "owner";

const $ = (id) => document.getElementById(id);
const video = $("video");
const screenEl = $("screen");
const statusEl = $("status");
const overlay = $("overlay");
const banner = $("banner");
if (tokenUrl) {  // a logged-in user switches phones on the selection page
  const back = Object.assign(document.createElement("a"), { href: "/h5/phones.html", textContent: "‹ my phones" });
  back.style.color = "inherit";
  $("title").replaceChildren(back);
}

// State shared with tests and benchmarks (read-only for them: input goes through real events).
const state = (window.cloudphone = {
  instance, codec: null, connected: false, session: null, welcome: null, seq: 0,
  stats: {}, serverStats: {}, reconnects: 0, lastError: null, pc: null, closedReason: null,
});

let ws = null;
let pc = null;
let channels = {};
let retryDelay = 500;
let retryTimer = null;
let finished = false;
const pointerIds = new PointerIds(10);

function setStatus(text) { statusEl.textContent = text; }
function showBanner(text) { banner.textContent = text; banner.hidden = !text; }

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ v: 1, ...obj }));
}

function sendInput(msg) {
  const ch = channels.input;
  if (!ch || ch.readyState !== "open") return 0;
  const seq = ++state.seq;
  ch.send(JSON.stringify({ ...msg, seq }));
  if (state.onInputSent) state.onInputSent(seq);
  return seq;
}

function sendControl(msg) {
  const ch = channels.control;
  if (ch && ch.readyState === "open") ch.send(JSON.stringify(msg));
}

const sharing = installSharing({ $, state, sendControl });

// Logged-in users get a fresh short-lived token before every (re)connect; a login that ended
// goes to the login page, which brings the user back to this phone afterwards.
async function refreshToken() {
  try {
    const res = await fetch(tokenUrl, { method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": sessionStorage.getItem("cloudphone.csrf") || "" } });
    if (res.status === 401) {
      location.replace(`/h5/login.html?next=${encodeURIComponent(location.pathname)}`);
      return false;
    }
    if (res.ok) token = (await res.json()).token;
  } catch (_) { /* offline: try the token we have */ }
  return true;
}

async function connect() {
  clearTimeout(retryTimer);
  setStatus("connecting…");
  if (tokenUrl && !(await refreshToken())) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${scheme}//${location.host}/ws`);
  ws.onopen = () => send({ type: "hello", instance, role, codec, ...(token ? { token } : {}) });
  ws.onmessage = (event) => onSignal(JSON.parse(event.data));
  ws.onclose = (event) => {
    teardown();
    if (finished) return;
    if ([4401, 4403, 4404, 4410, 1008].includes(event.code)) {
      finished = true;
      setStatus(`disconnected: ${event.reason || event.code}`);
      showBanner(state.closedReason || event.reason || "disconnected");
      return;
    }
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  state.connected = false;
  setStatus(`reconnecting in ${(retryDelay / 1000).toFixed(1)} s…`);
  retryTimer = setTimeout(() => { state.reconnects++; connect(); }, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 8000);
}

function teardown() {
  for (const ch of Object.values(channels)) { try { ch.close(); } catch (_) { /* already closed */ } }
  channels = {};
  if (pc) { pc.close(); pc = null; state.pc = null; }
}

async function onSignal(msg) {
  switch (msg.type) {
    case "welcome":
      state.welcome = msg;
      state.session = msg.session;
      // A single-touch guest (QEMU 7.2's tablet) gets only the first finger, not a jumble.
      pointerIds.max = msg.capabilities?.multitouch === false ? 1 : (msg.capabilities?.maxPointers || 10);
      createPeer(msg.iceServers || []);
      break;
    case "offer":
      await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      send({ type: "answer", sdp: pc.localDescription.sdp });
      break;
    case "error":
      state.lastError = msg;
      console.warn("signaling error", msg.code, msg.message);
      if (msg.fatal) { setStatus(`error: ${msg.message}`); showBanner(msg.message); }
      break;
    case "bye":
      state.closedReason = msg.reason;
      // The edge ended this session on purpose: reconnecting would only be refused again.
      finished = /releas|delet|kick|revok|expired|idle|length|preempt/i.test(msg.reason || "");
      showBanner(msg.reason || "disconnected");
      break;
  }
}

// The video starts muted (browsers only autoplay muted media); a phone that streams sound
// (Android 11+ over scrcpy) gets a button, since unmuting needs the user's own gesture.
const soundToggle = document.getElementById("sound-toggle");
function showSoundToggle() {
  soundToggle.hidden = false;
  setSound(!video.muted);
}
function setSound(on) {
  video.muted = !on;
  soundToggle.setAttribute("aria-pressed", String(on));
  soundToggle.textContent = on ? "🔊 sound" : "🔇 sound";
  if (on) video.play().catch(() => {});
}
soundToggle.addEventListener("click", () => setSound(video.muted));

function createPeer(iceServers) {
  pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
  state.pc = pc;
  pc.onicecandidate = (e) => {
    if (e.candidate) {
      send({ type: "candidate", candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid,
             sdpMLineIndex: e.candidate.sdpMLineIndex });
    }
  };
  pc.ontrack = (e) => {
    // Play frames as soon as they decode: the stream is interactive, not a movie.
    try { e.receiver.jitterBufferTarget = 0; } catch (_) { /* older browsers */ }
    try { e.receiver.playoutDelayHint = 0; } catch (_) { /* not supported */ }
    video.srcObject = e.streams[0] || new MediaStream([e.track]);
    video.play().catch(() => {});
    if (e.track.kind === "audio") showSoundToggle();
  };
  pc.ondatachannel = (e) => {
    const ch = e.channel;
    channels[ch.label] = ch;
    ch.onmessage = (m) => onChannelMessage(ch.label, m.data);
    if (ch.label === "control") {
      if (ch.readyState === "open") sendStatsWanted(); else ch.onopen = () => sendStatsWanted();
    }
  };
  pc.onconnectionstatechange = () => {
    const s = pc && pc.connectionState;
    if (s === "connected") {
      state.connected = true;
      retryDelay = 500;
      showBanner("");
      setStatus(`${instance} · ${state.welcome?.role || role}`);
    } else if (s === "failed") {
      ws && ws.close();
    }
  };
}

function onChannelMessage(label, raw) {
  let msg;
  try { msg = JSON.parse(raw); } catch (_) { return; }
  if (label === "stats") { state.serverStats = msg; return; }
  if (msg.type === "error") { state.lastError = msg; console.warn(label, msg.code, msg.message); }
  if (label === "control" && sharing.onMessage(msg)) return;
  if (msg.type === "error") return;
  if (msg.type === "guest/state") {
    showBanner(msg.state === "running" ? "" : msg.event.replace("guest-", "phone ") + "…");
  }
}

// -- touch: Pointer Events cover touch, pen and mouse alike --------------------------------------
function pointerMessage(e, action) {
  const pt = mapToVideo(video, e.clientX, e.clientY);
  if (!pt && action === "down") return null;
  const id = action === "down" ? pointerIds.acquire(e.pointerId) : pointerIds.get(e.pointerId);
  if (id === undefined) return null;
  const x = pt ? pt.x : 0, y = pt ? pt.y : 0;
  const clamp = (v) => Math.min(1, Math.max(0, v));
  const pressure = e.pointerType === "mouse" ? 1 : (e.pressure || 1);
  return { type: "touch", a: action, id, x: clamp(x), y: clamp(y), p: clamp(pressure) };
}

screenEl.addEventListener("pointerdown", (e) => {
  const msg = pointerMessage(e, "down");
  if (!msg) return;
  e.preventDefault();
  screenEl.setPointerCapture(e.pointerId);
  video.focus({ preventScroll: true });
  sendInput(msg);
});
screenEl.addEventListener("pointermove", (e) => {
  if (pointerIds.get(e.pointerId) === undefined) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  const last = events.length ? events[events.length - 1] : e;
  const msg = pointerMessage(last, "move");
  if (msg) sendInput(msg);
});
for (const [type, action] of [["pointerup", "up"], ["pointercancel", "cancel"]]) {
  screenEl.addEventListener(type, (e) => {
    if (pointerIds.get(e.pointerId) === undefined) return;
    const msg = pointerMessage(e, action);
    pointerIds.release(e.pointerId);
    if (msg) sendInput(msg);
  });
}
screenEl.addEventListener("contextmenu", (e) => e.preventDefault());

// -- keys, text, navigation ----------------------------------------------------------------------
video.addEventListener("keydown", (e) => {
  if (e.metaKey || e.ctrlKey) return;
  e.preventDefault();
  sendInput({ type: "key", a: "down", code: e.code, shift: e.shiftKey });
});
video.addEventListener("keyup", (e) => {
  if (e.metaKey || e.ctrlKey) return;
  e.preventDefault();
  sendInput({ type: "key", a: "up", code: e.code, shift: e.shiftKey });
});
$("typing").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("text");
  if (input.value) sendInput({ type: "text", s: input.value });
  input.value = "";
});
$("backspace").addEventListener("click", () => sendInput({ type: "key", a: "press", code: "Backspace" }));
for (const button of document.querySelectorAll("#navbar button")) {
  button.addEventListener("click", () => sendInput({ type: "nav", k: button.dataset.nav }));
}

// -- statistics overlay --------------------------------------------------------------------------
const toggle = $("stats-toggle");
toggle.addEventListener("click", () => {
  const on = toggle.getAttribute("aria-pressed") !== "true";
  toggle.setAttribute("aria-pressed", String(on));
  overlay.hidden = !on;
  sendStatsWanted();
});
// The edge sends its own numbers (encode time) only while the overlay shows them.
function sendStatsWanted() { sendControl({ type: "control/stats", on: !overlay.hidden }); }
if (params.get("stats") === "1") toggle.click();

let previous = null;
setInterval(async () => {
  if (!pc) return;
  const report = await pc.getStats();
  let inbound = null, pair = null;
  const codecs = {};
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") inbound = s;
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
    if (s.type === "codec") codecs[s.id] = s.mimeType;
  });
  if (!inbound) return;
  const now = inbound.timestamp;
  const bitrate = previous ? (8 * (inbound.bytesReceived - previous.bytes)) / ((now - previous.t) / 1000) : 0;
  const fps = inbound.framesPerSecond ?? (previous ? (1000 * (inbound.framesDecoded - previous.frames)) / (now - previous.t) : 0);
  previous = { t: now, bytes: inbound.bytesReceived, frames: inbound.framesDecoded };
  const decodeMs = inbound.framesDecoded ? (1000 * inbound.totalDecodeTime) / inbound.framesDecoded : 0;
  const jitterMs = inbound.jitterBufferEmittedCount ? (1000 * inbound.jitterBufferDelay) / inbound.jitterBufferEmittedCount : 0;
  const codecName = (codecs[inbound.codecId] || "").replace("video/", "");
  state.codec = codecName.toLowerCase() || null;
  const server = state.serverStats.streams?.[state.serverStats.stream || state.codec] || {};
  state.stats = {
    fps: fps || 0, bitrate, decodeMs, jitterMs, codec: codecName,
    rttMs: pair && pair.currentRoundTripTime !== undefined ? pair.currentRoundTripTime * 1000 : null,
    width: inbound.frameWidth, height: inbound.frameHeight, framesDecoded: inbound.framesDecoded,
    framesDropped: inbound.framesDropped, encodeMs: server.encodeMs,
  };
  const st = state.stats;
  overlay.textContent = [
    `${st.codec} ${st.width}×${st.height}`,
    `fps     ${st.fps.toFixed(1)}`,
    `bitrate ${(st.bitrate / 1e6).toFixed(2)} Mbps`,
    `rtt     ${st.rttMs === null ? "–" : st.rttMs.toFixed(1) + " ms"}`,
    `decode  ${st.decodeMs.toFixed(1)} ms`,
    `jitter  ${st.jitterMs.toFixed(1)} ms`,
    `encode  ${st.encodeMs === undefined ? "–" : st.encodeMs + " ms"} (server)`,
  ].join("\n");
}, 1000);

document.addEventListener("visibilitychange", () => {
  // Coming back to a tab whose connection died in the background: reconnect at once.
  if (!document.hidden && !finished && (!ws || ws.readyState === WebSocket.CLOSED)) connect();
});

if (params.get("probe") === "1") installProbe(video, state);
if (!instance) { setStatus("no phone in the address"); } else { connect(); }
