// Cinema Chat dashboard: plain JavaScript, no framework, no build step.
// Live updates come from /api/events (server-sent events); the page never
// polls for the conversation. Presence and service health are re-read every
// few seconds while their page is shown.
"use strict";

const TOKEN_KEY = "cinema.token";
const state = {
  auth: false,
  token: localStorage.getItem(TOKEN_KEY) || "",
  sessions: new Map(), // sid -> {card, log, seen:Set, pi, state}
  pis: [],
  piIssues: new Map(), // pi -> last client issue text
  piPlayer: new Map(), // pi -> last playback state
  levels: new Map(), // sid -> level
  events: null,
  audio: null,
  timers: {},
};

// ---------- helpers ----------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const $ = (sel, root = document) => root.querySelector(sel);

function shortId(id) {
  return id ? id.slice(0, 8) : "";
}

function enumWord(v, prefix) {
  return String(v || "").replace(prefix, "").toLowerCase();
}

function fmtSecs(s) {
  s = Number(s) || 0;
  const m = Math.floor(s / 60);
  const rest = (s - m * 60).toFixed(1).padStart(4, "0");
  return `${m}:${rest}`;
}

function fmtRange(a, b) {
  return `${fmtSecs(a)}–${fmtSecs(b)}`;
}

function fmtTime(ms) {
  if (!ms) return "";
  const d = new Date(Number(ms));
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function fmtDate(ms) {
  if (!ms) return "—";
  const d = new Date(Number(ms));
  return d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

function fmtDuration(s) {
  s = Math.max(0, Math.round(Number(s) || 0));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const h = Math.floor(s / 3600);
  if (h < 48) return `${h} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

function toast(text, kind = "error") {
  const t = $("#toast");
  t.textContent = text;
  t.className = kind;
  t.hidden = false;
  clearTimeout(state.timers.toast);
  state.timers.toast = setTimeout(() => (t.hidden = true), 5000);
}

// ---------- API ----------

function askToken() {
  const t = window.prompt("This installation needs its API token (CINEMA_API_TOKEN):", state.token || "");
  if (t === null) return false;
  state.token = t.trim();
  localStorage.setItem(TOKEN_KEY, state.token);
  return true;
}

async function api(method, path, body, retried = false) {
  const headers = {};
  // Every POST says JSON, even without a body: the gateway refuses others
  // (a form on another site cannot send it).
  if (body !== undefined || method !== "GET") headers["content-type"] = "application/json";
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new Error(`the gateway cannot be reached (${e.message})`);
  }
  if (resp.status === 401 && !retried && askToken()) {
    connectStreams();
    return api(method, path, body, true);
  }
  let data = null;
  try {
    data = await resp.json();
  } catch (_) {
    data = null;
  }
  if (!resp.ok) {
    const msg = (data && (data.error || data.message)) || `${resp.status} ${resp.statusText}`;
    const err = new Error(msg);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function streamUrl(path) {
  return state.token ? `${path}?token=${encodeURIComponent(state.token)}` : path;
}

// Clip details (range, film, media URL) by clip id, asked once each.
const clipCache = new Map();
function clipInfo(id) {
  if (!clipCache.has(id)) {
    const p = api("GET", `/api/clips/${encodeURIComponent(id)}`);
    p.catch(() => clipCache.delete(id));
    clipCache.set(id, p);
  }
  return clipCache.get(id);
}

// A still of the clip (its middle frame, straight from the film's media
// URL); a click plays the clip there, with sound.
function clipThumb(clip, slot, meta) {
  if (!clip.id) return;
  clipInfo(clip.id)
    .then((info) => {
      const c = info.clip || {};
      const start = Number(c.start_s) || 0;
      const end = Number(c.end_s) || start;
      if (meta && !meta.querySelector(".range")) {
        meta.prepend(el("span", { class: "film", text: c.film_title || "" }), " · ", el("span", { class: "range", text: fmtRange(start, end) }));
      }
      if (c.thumbnail) {
        // The keyframe picture made at ingest.
        slot.replaceWith(el("img", { class: "thumb", src: c.thumbnail, alt: "" }));
        return;
      }
      // No thumbnail (ingested without them): a still from the film itself.
      const mid = ((start + end) / 2).toFixed(2);
      const v = el("video", { class: "thumb", muted: true, preload: "metadata", playsinline: true, src: `${info.media_url}#t=${mid}`, title: "Play this clip", tabindex: "0" });
      v.muted = true;
      const play = () => {
        v.muted = false;
        v.currentTime = start;
        v.play().catch(() => {});
        const stop = () => {
          if (v.currentTime >= end) {
            v.pause();
            v.removeEventListener("timeupdate", stop);
          }
        };
        v.addEventListener("timeupdate", stop);
      };
      v.addEventListener("click", play);
      v.addEventListener("keydown", (e) => e.key === "Enter" && play());
      slot.replaceWith(v);
    })
    .catch(() => {
      /* no preview: the placeholder stays */
    });
}

// ---------- live streams ----------

function setLive(on, text) {
  const b = $("#live");
  b.textContent = text;
  b.className = `badge ${on ? "on" : "off"}`;
}

function connectStreams() {
  if (state.events) state.events.close();
  if (state.audio) state.audio.close();
  const es = new EventSource(streamUrl("/api/events"));
  state.events = es;
  es.onopen = () => setLive(true, "live");
  es.onerror = () => {
    if (es.readyState !== EventSource.CLOSED) {
      setLive(false, "reconnecting…"); // the browser retries by itself
      return;
    }
    // Refused (a wrong token, a gateway that answered with an error): the
    // browser gives up, so try again a little later.
    setLive(false, state.auth ? "offline (token?)" : "offline");
    clearTimeout(state.timers.reconnect);
    state.timers.reconnect = setTimeout(() => state.events === es && connectStreams(), 3000);
  };
  for (const kind of ["created", "joined", "transcript", "play", "playback", "conversation", "client", "ended"]) {
    es.addEventListener(kind, (m) => onEvent(kind, JSON.parse(m.data)));
  }
  es.addEventListener("record", (m) => onRecord(JSON.parse(m.data)));
  es.addEventListener("lagged", () => {
    // Missed events: read every live session's record again.
    connectStreams();
  });
  const au = new EventSource(streamUrl("/api/audio"));
  state.audio = au;
  au.addEventListener("level", (m) => {
    const d = JSON.parse(m.data);
    state.levels.set(d.session_id, { level: d.level, at: Date.now() });
    drawLevels();
  });
}

// ---------- sessions ----------

function sessionCard(sid, info = {}) {
  let s = state.sessions.get(sid);
  if (s) {
    if (info.pi_id) setSessionPi(s, info.pi_id);
    return s;
  }
  const log = el("ol", { class: "log", "aria-live": "polite" });
  const stateBadge = el("span", { class: "state waiting", text: "waiting" });
  const player = el("span", { class: "player", text: "" });
  const pi = el("b", { class: "pi-name", text: info.pi_id || "…" });
  const input = el("input", {
    type: "text",
    name: "text",
    placeholder: "Say something to the TV…",
    autocomplete: "off",
    maxlength: "1000",
  });
  const sayBtn = el("button", { type: "submit", text: "Say" });
  const form = el("form", { class: "say row" }, input, sayBtn);
  const endBtn = el("button", { type: "button", class: "danger end", text: "End" });
  const closeBtn = el("button", { type: "button", class: "ghost close", text: "Close", hidden: true });
  const card = el(
    "article",
    { class: "card session", dataset: { sid } },
    el(
      "header",
      { class: "row spread" },
      el("div", {}, el("strong", { text: `Session ${shortId(sid)}`, title: sid }), " on ", pi, " ", stateBadge, " ", player),
      el("div", { class: "row" }, endBtn, closeBtn),
    ),
    log,
    form,
  );
  s = { sid, card, log, seen: new Set(), stateBadge, player, piEl: pi, form, input, endBtn, closeBtn, pi: info.pi_id || "", state: "waiting", playback: new Map() };
  state.sessions.set(sid, s);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    sayBtn.disabled = true;
    try {
      await api("POST", `/api/sessions/${encodeURIComponent(sid)}/say`, { text });
      input.value = "";
    } catch (err) {
      toast(`Could not say it: ${err.message}`);
    } finally {
      sayBtn.disabled = false;
      input.focus();
    }
  });
  endBtn.addEventListener("click", async () => {
    endBtn.disabled = true;
    try {
      const r = await api("POST", `/api/sessions/${encodeURIComponent(sid)}/end`);
      setSessionState(s, r.state || "ended", r.end_reason);
    } catch (err) {
      toast(`Could not end the session: ${err.message}`);
      endBtn.disabled = false;
    }
  });
  closeBtn.addEventListener("click", () => {
    card.remove();
    state.sessions.delete(sid);
    updateEmpty();
  });
  if (sid === talk.sid) placeTalkCard(s);
  else $("#live-sessions").prepend(card);
  updateEmpty();
  return s;
}

function updateEmpty() {
  $("#no-sessions").hidden = [...state.sessions.values()].some((x) => x.sid !== talk.sid);
}

function setSessionPi(s, pi) {
  if (!pi) return;
  s.pi = pi;
  s.piEl.textContent = pi;
}

function setSessionState(s, word, reason) {
  s.state = word;
  s.stateBadge.textContent = word;
  s.stateBadge.className = `state ${word}`;
  const over = word === "ended" || word === "failed";
  s.input.disabled = over;
  s.form.querySelector("button").disabled = over;
  s.endBtn.hidden = over;
  s.closeBtn.hidden = !over;
  if (over) {
    s.player.textContent = "";
    if (reason) s.stateBadge.title = reason;
    refreshPast();
  }
}

function addEntry(s, kind, children, extra = {}) {
  const li = el("li", { class: `entry ${kind}`, ...extra }, children);
  s.log.append(li);
  s.log.scrollTop = s.log.scrollHeight;
  return li;
}

function clipEntry(s, clip, opts) {
  const key = `clip:${clip.id}:${opts.at_ms}`;
  if (s.seen.has(key)) return;
  s.seen.add(key);
  const known = clip.end_s !== undefined;
  const meta = el(
    "div",
    { class: "clip-meta" },
    known ? [el("span", { class: "film", text: clip.film_title || clip.film_id || "" }), " · ", el("span", { class: "range", text: fmtRange(clip.start_s, clip.end_s) })] : null,
    opts.greeting ? el("span", { class: "tag", text: "greeting" }) : null,
  );
  const thumb = clip.thumbnail ? el("img", { class: "thumb", src: clip.thumbnail, alt: "" }) : el("div", { class: "thumb placeholder", "aria-hidden": "true" });
  const li = addEntry(
    s,
    "clip",
    [thumb, el("div", { class: "clip-body" }, el("q", { class: "caption", text: clip.caption || "" }), meta)],
    { dataset: { turn: String(opts.turn ?? ""), clip: clip.id || "", command: opts.command_id || "" } },
  );
  li.title = `${opts.greeting ? "Greeting" : `Turn ${opts.turn ?? ""}`} · ${fmtTime(opts.at_ms)}`;
  if (!clip.thumbnail) clipThumb(clip, thumb, known ? null : meta);
  const pending = s.playback.get(opts.command_id);
  if (pending) markPlayback(li, pending);
}

// Playback state on the clip's entry: playing, played, cut short, failed.
const PLAYBACK_WORDS = { started: "playing", finished: "played", interrupted: "cut short", failed: "failed", expired: "never played" };
function markPlayback(li, st) {
  let chip = li.querySelector(".playback");
  if (!chip) {
    chip = el("span", { class: "playback" });
    $(".clip-meta", li).append(chip);
  }
  chip.textContent = PLAYBACK_WORDS[st] || st;
  chip.className = `playback ${st}`;
}

function visitorEntry(s, text, at_ms, source) {
  const key = `user:${at_ms}:${text}`;
  if (s.seen.has(key)) return;
  s.seen.add(key);
  const who = source === "speech" ? "Visitor (spoken)" : source === "typed" ? "Visitor (typed)" : "Visitor";
  addEntry(s, "visitor", [el("span", { class: "who", text: who }), el("span", { class: "line", text })], { title: fmtTime(at_ms) });
}

function noteEntry(s, kind, text, title) {
  return addEntry(s, `note ${kind}`, [text], title ? { title } : {});
}

function onRecord(d) {
  const rec = d.message || {};
  const s = sessionCard(d.session_id, { pi_id: rec.pi_id });
  // The stored record replaces what the card showed: a reconnecting page
  // catches up from it, then live events follow.
  s.log.replaceChildren();
  s.seen.clear();
  for (const m of rec.display_messages || []) {
    if (m.role === "user") {
      visitorEntry(s, m.content, m.at_ms, "");
    } else if (m.role === "assistant") {
      const parsed = /^\[VIDEO: (.*?) \| "(.*)"\]$/.exec(m.content || "");
      clipEntry(s, { id: m.clip_id, caption: parsed ? parsed[2] : m.content, film_title: parsed ? parsed[1] : "" }, { at_ms: m.at_ms });
    }
  }
  if (rec.last_error) noteEntry(s, "error", rec.last_error);
  setSessionState(s, rec.status || "waiting", rec.end_reason);
}

function onEvent(kind, d) {
  const sid = d.session_id;
  if (kind === "created" || kind === "joined" || kind === "ended") {
    // A Pi's sessions changed: read presence again, a moment later.
    clearTimeout(state.timers.pis);
    state.timers.pis = setTimeout(loadPis, 1500);
  }
  const m = d.message || {};
  if (m.error && !m.session_id && Object.keys(m).length === 1) {
    // A payload the gateway could not read.
    const s = state.sessions.get(sid);
    if (s) noteEntry(s, "error", `unreadable ${kind} event: ${m.error}`);
    return;
  }
  switch (kind) {
    case "created": {
      const sess = m.session || {};
      const s = sessionCard(sid, { pi_id: sess.browser ? "a browser" : sess.pi_id });
      const where = sess.browser ? "for a browser; waiting for its page" : `on ${sess.pi_id || "a Pi"}; starting the TV`;
      noteEntry(s, "system", `Session created ${where}…`, fmtTime(sess.created_at_ms));
      break;
    }
    case "joined": {
      const s = sessionCard(sid, { pi_id: m.pi_id });
      setSessionState(s, "active");
      noteEntry(s, "system", m.pid ? `The TV joined (pid ${m.pid}).` : "The browser joined as the TV.", fmtTime(m.at_ms));
      break;
    }
    case "transcript": {
      if (!m.is_final) return;
      const s = sessionCard(sid);
      visitorEntry(s, m.text, m.at_ms, enumWord(m.source, "TRANSCRIPT_SOURCE_"));
      break;
    }
    case "conversation":
      onConversation(sessionCard(sid), m);
      break;
    case "playback": {
      const s = sessionCard(sid);
      const st = enumWord(m.state, "PLAYBACK_STATE_");
      s.player.textContent = st === "started" ? "▶ playing" : "";
      if (s.pi) state.piPlayer.set(s.pi, `${st === "started" ? "playing" : "idle"} since ${fmtTime(m.at_ms)}`);
      // The clip's entry may come a moment after its playback starts.
      s.playback.set(m.command_id, st);
      const li = [...s.log.querySelectorAll("li.clip")].find((x) => x.dataset.command === m.command_id);
      if (li) markPlayback(li, st);
      if (st === "failed") noteEntry(s, "error", `The clip failed to play: ${m.error}`);
      if (st === "expired") noteEntry(s, "warn", `The clip was never played: ${m.error}`);
      break;
    }
    case "client": {
      const s = sessionCard(sid, { pi_id: m.pi_id });
      const what = enumWord(m.kind, "CLIENT_ISSUE_KIND_").replace("_", " ");
      const text = `Pi ${m.pi_id}: ${what}: ${m.detail}${m.restart_in_ms ? ` (restart in ${m.restart_in_ms} ms)` : ""}`;
      noteEntry(s, "warn", text, (m.stderr_tail || []).join("\n"));
      if (m.pi_id) state.piIssues.set(m.pi_id, `${fmtTime(m.at_ms)} ${what}: ${m.detail}`);
      break;
    }
    case "ended": {
      const s = state.sessions.get(sid);
      if (!s) {
        refreshPast();
        return;
      }
      setSessionState(s, enumWord(m.state, "SESSION_STATE_") || "ended", m.reason);
      noteEntry(s, "system", `Session ended${m.reason ? `: ${m.reason}` : ""}.`, fmtTime(m.at_ms));
      break;
    }
    default:
      break; // play commands: the clip shows when the director records it
  }
}

function onConversation(s, ev) {
  const turn = ev.turn;
  if (ev.search) {
    const mode = enumWord(ev.search.mode, "SEARCH_MODE_");
    addEntry(s, "note search", [el("span", { class: "label", text: "search" }), `${mode}: “${ev.search.query}” → ${ev.search.hits} hit${ev.search.hits === 1 ? "" : "s"}`]);
  } else if (ev.options) {
    const opts = ev.options.options || [];
    if (!opts.length) return;
    const list = el("ol", { class: "options" }, opts.map((c) => el("li", {}, el("q", { text: c.caption }), el("span", { class: "muted", text: ` ${c.film_title || ""}` }))));
    addEntry(s, "note options", [el("details", {}, el("summary", {}, el("span", { class: "label", text: "options" }), `${opts.length} clip${opts.length === 1 ? "" : "s"} considered`), list)]);
  } else if (ev.reasoning) {
    if (ev.reasoning.text) addEntry(s, "note reasoning", [el("span", { class: "label", text: "why" }), ev.reasoning.text]);
  } else if (ev.clip_played) {
    const p = ev.clip_played;
    clipEntry(s, p.clip || {}, { at_ms: ev.at_ms, greeting: p.greeting, turn, command_id: p.command_id });
  } else if (ev.latency) {
    const l = ev.latency;
    const text = `turn ${turn}: ${l.total_ms} ms (queue ${l.queue_ms} ms, search ${l.search_ms} ms, model ${l.model_ms} ms)`;
    const clip = [...s.log.querySelectorAll(`li.clip[data-turn="${turn}"]`)].pop();
    if (clip) {
      $(".clip-meta", clip).append(el("span", { class: "latency", text: `${l.total_ms} ms`, title: text }));
    } else {
      noteEntry(s, "latency", text);
    }
  } else if (ev.status_update) {
    addEntry(s, "note status", [el("span", { class: "label", text: "status" }), ev.status_update.status]);
  } else if (ev.error) {
    addEntry(s, "note error", [el("span", { class: "label", text: "error" }), ev.error.message]);
  }
  // user_line repeats the transcript, shown already.
}

async function loadLiveSessions() {
  // Cards come from the event stream's records; this only fills in Pis and
  // states for sessions the stream has not told about (e.g. no record yet).
  try {
    const { sessions } = await api("GET", "/api/sessions");
    for (const x of sessions) {
      if (x.state === "waiting" || x.state === "active") {
        const s = sessionCard(x.identifier, { pi_id: x.browser ? "a browser" : x.pi_id });
        if (s.state === "waiting") setSessionState(s, x.state);
      }
    }
    renderPast(sessions);
  } catch (err) {
    toast(`Cannot list sessions: ${err.message}`);
  }
}

async function refreshPast() {
  clearTimeout(state.timers.past);
  state.timers.past = setTimeout(async () => {
    try {
      const { sessions } = await api("GET", "/api/sessions");
      renderPast(sessions);
    } catch (_) {
      /* shown elsewhere */
    }
  }, 300);
}

function renderPast(sessions) {
  const rows = sessions
    .filter((x) => x.state === "ended" || x.state === "failed")
    .slice(0, 50)
    .map((x) =>
      el(
        "tr",
        { class: "clickable", tabindex: "0", onclick: () => showPast(x.identifier), onkeydown: (e) => e.key === "Enter" && showPast(x.identifier) },
        el("td", { title: x.identifier }, el("code", { text: shortId(x.identifier) })),
        el("td", { text: x.browser ? "browser" : x.pi_id }),
        el("td", {}, el("span", { class: `state ${x.state}`, text: x.state })),
        el("td", { text: fmtDate(x.created_at_ms) }),
        el("td", { text: fmtDate(x.ended_at_ms) }),
        el("td", { class: "muted", text: x.end_reason || "" }),
      ),
    );
  const body = $("#past tbody");
  body.replaceChildren(...rows);
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: "6", class: "empty", text: "No past session yet." })));
}

async function showPast(sid) {
  const view = $("#past-view");
  view.hidden = false;
  view.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  try {
    const r = await api("GET", `/conversation-status/${encodeURIComponent(sid)}`);
    const msgs = r.context.display_messages.map((m) =>
      el("li", { class: `entry ${m.role === "user" ? "visitor" : "clip"}` }, el("span", { class: "who", text: m.role === "user" ? "Visitor" : "TV" }), el("span", { class: "line", text: m.content })),
    );
    view.replaceChildren(
      el("h3", {}, `Session ${shortId(sid)} `, el("span", { class: `state ${r.status}`, text: r.status })),
      el("p", { class: "muted", text: `${r.plays} clip(s) played on ${r.pi_id || "?"}${r.end_reason ? ` · ${r.end_reason}` : ""}${r.last_error ? ` · last error: ${r.last_error}` : ""}` }),
      el("ol", { class: "log static" }, msgs.length ? msgs : el("li", { class: "empty", text: "Nothing was said." })),
    );
  } catch (err) {
    view.replaceChildren(el("p", { class: "msg error", text: err.message }));
  }
}

// ---------- talk: this browser is the TV ----------
//
// "Start talking" opens the microphone, creates a browser session
// (POST /api/connect {browser: true}) and opens its socket
// (/api/sessions/{id}/talk): the gateway joins the session for the page,
// sends the clips to play, and hears the microphone (16 kHz s16le frames
// from the AudioWorklet in /mic-worklet.js) with the Pi's own ears and echo
// gate. The page reports each clip's playback back over the socket.

const talk = {
  sid: null,
  ws: null,
  ctx: null,
  stream: null,
  micOn: false,
  listening: false,
  current: null,
  ended: false,
  retries: 0,
  // Every socket message, in and out (not audio), with performance.now():
  // the browser test reads it.
  log: [],
  // The loudest input level the meter has shown (the browser test reads it).
  meterMax: 0,
};
window.cinemaTalk = talk;

function talkMsg(text, kind = "") {
  const m = $("#talk-msg");
  m.textContent = text;
  m.className = `msg ${kind}`;
}

function talkBadge() {
  const b = $("#talk-state");
  let word = "not started";
  let cls = "off";
  if (talk.ended) word = "ended";
  else if (talk.ws && talk.ws.readyState === WebSocket.OPEN) {
    if (talk.current) [word, cls] = ["TV speaking", "speaking"];
    else if (talk.listening) [word, cls] = [talk.micOn ? "listening" : "microphone off", talk.micOn ? "listening" : "off"];
    else [word, cls] = ["TV speaking", "speaking"];
  } else if (talk.sid) word = "connecting…";
  b.textContent = word;
  b.className = `badge ${cls}`;
  const mic = $("#talk-mic");
  mic.setAttribute("aria-pressed", String(talk.micOn));
  mic.textContent = talk.micOn ? "Microphone on" : "Microphone off";
  mic.classList.toggle("deaf", !talk.listening);
}

function placeTalkCard(s) {
  const box = $("#talk-conversation");
  box.querySelector(".empty")?.remove();
  box.replaceChildren(s.card);
  updateEmpty();
}

function talkSend(obj) {
  talk.log.push({ dir: "out", at: performance.now(), ...obj });
  if (talk.ws && talk.ws.readyState === WebSocket.OPEN) talk.ws.send(JSON.stringify(obj));
}

async function micOpen() {
  if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    throw new Error("this browser cannot capture audio here (it needs HTTPS or localhost)");
  }
  talk.stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  talk.ctx = new AudioContext();
  await talk.ctx.audioWorklet.addModule("/mic-worklet.js");
  const source = talk.ctx.createMediaStreamSource(talk.stream);
  const node = new AudioWorkletNode(talk.ctx, "mic-16k", { numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1 });
  // Connected to the output (silenced), so the graph runs it.
  const mute = talk.ctx.createGain();
  mute.gain.value = 0;
  source.connect(node).connect(mute).connect(talk.ctx.destination);
  node.port.onmessage = (e) => {
    const ws = talk.ws;
    // A socket that cannot keep up drops audio rather than queueing it.
    if (talk.micOn && ws && ws.readyState === WebSocket.OPEN && ws.bufferedAmount < 64000) ws.send(e.data);
  };
  await talk.ctx.resume();
  talk.micOn = true;
}

function micClose() {
  talk.micOn = false;
  if (talk.stream) talk.stream.getTracks().forEach((t) => t.stop());
  if (talk.ctx) talk.ctx.close().catch(() => {});
  talk.stream = null;
  talk.ctx = null;
}

async function talkStart() {
  const btn = $("#talk-start");
  btn.disabled = true;
  talkMsg("Opening the microphone…");
  // The click lets the page play sound and use the microphone.
  try {
    await micOpen();
  } catch (err) {
    talkMsg(`No microphone (${err.message}); you can still type.`, "error");
  }
  try {
    talkMsg("Starting a session…");
    const r = await api("POST", "/api/connect", { browser: true });
    talk.sid = r.identifier;
    talk.ended = false;
    talk.retries = 0;
    talk.log.push({ dir: "in", at: performance.now(), type: "session", session_id: r.identifier });
    placeTalkCard(sessionCard(r.identifier, { pi_id: "this browser" }));
    talkSocket();
    btn.hidden = true;
    $("#talk-end").hidden = false;
    $("#talk-end").disabled = false;
    $("#talk-mic").disabled = !talk.ctx;
  } catch (err) {
    talkMsg(`Could not start: ${err.message}`, "error");
    micClose();
  } finally {
    btn.disabled = false;
    talkBadge();
  }
}

function talkSocket() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  let url = `${proto}//${location.host}/api/sessions/${encodeURIComponent(talk.sid)}/talk`;
  if (state.token) url += `?token=${encodeURIComponent(state.token)}`;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  talk.ws = ws;
  ws.onopen = () => {
    talk.retries = 0;
    talkMsg("Connected. The TV is joining…");
    talkBadge();
  };
  ws.onmessage = (m) => {
    if (typeof m.data !== "string") return;
    let msg;
    try {
      msg = JSON.parse(m.data);
    } catch (_) {
      return;
    }
    talk.log.push({ dir: "in", at: performance.now(), ...msg });
    onTalkMessage(msg);
  };
  ws.onclose = (e) => {
    if (talk.ws !== ws) return;
    talk.ws = null;
    talkBadge();
    if (talk.ended) return;
    if (e.code === 1006 && talk.retries < 5) {
      // The connection broke: the session goes on, so connect again.
      talk.retries += 1;
      talkMsg("The connection broke; reconnecting…", "error");
      setTimeout(() => !talk.ended && talk.sid && talkSocket(), 1000 * talk.retries);
      return;
    }
    talkMsg(`Disconnected: ${e.reason || `code ${e.code}`}`, "error");
  };
}

function onTalkMessage(m) {
  switch (m.type) {
    case "joined":
      talkMsg(talk.micOn ? "The TV is here. Wait for its greeting, then speak." : "The TV is here. Type below to talk.", "ok");
      break;
    case "listening":
      talk.listening = m.open;
      break;
    case "play":
      talkMsg(m.greeting ? "The TV greets you…" : "The TV answers…");
      playOnTv(m);
      break;
    case "utterance":
      talkMsg(`Heard you (${(m.ms / 1000).toFixed(1)} s); the TV is thinking…`);
      break;
    case "ended":
      talkOver(`The session ended${m.reason ? `: ${m.reason}` : ""}.`);
      break;
    case "error":
      talkMsg(m.message, "error");
      break;
    default:
      break;
  }
  talkBadge();
}

// Plays exactly the clip's range of its film, then reports it finished.
function playOnTv(m) {
  const v = $("#talk-video");
  const cur = { id: m.command_id, start: Number(m.start_s) || 0, end: Number(m.end_s) || 0, started: false, done: false, caption: m.caption };
  talk.current = cur;
  $("#talk-caption").textContent = m.caption || "";
  cur.report = (st, error = "") => {
    if (cur.done) return;
    if (st === "started") {
      if (cur.started) return;
      cur.started = true;
    } else {
      cur.done = true;
      if (talk.current === cur) talk.current = null;
      if (!talk.ended && talk.micOn) talkMsg("Your turn: speak when the badge says listening.", "ok");
      talkBadge();
    }
    talkSend({ type: "playback", command_id: cur.id, state: st, error });
  };
  const go = () => {
    if (talk.current !== cur) return;
    v.currentTime = cur.start;
    v.play().then(
      () => cur.report("started"),
      (err) => cur.report("failed", `the browser would not play it: ${err.message}`),
    );
  };
  if (v.dataset.src === m.url && v.readyState >= 1) {
    go();
  } else {
    v.dataset.src = m.url;
    v.src = m.url;
    v.addEventListener("loadedmetadata", go, { once: true });
  }
}

function watchTv() {
  const c = talk.current;
  const v = $("#talk-video");
  if (!c || !c.started || c.done) return;
  if (v.currentTime >= c.end - 0.02 || v.ended) {
    v.pause();
    c.report("finished");
  }
}

function talkOver(text) {
  talk.ended = true;
  const v = $("#talk-video");
  v.pause();
  if (talk.current) talk.current.done = true;
  talk.current = null;
  $("#talk-caption").textContent = "";
  micClose();
  state.levels.delete(talk.sid);
  drawLevels();
  if (talk.ws) talk.ws.close(1000, "the session ended");
  talk.ws = null;
  talkMsg(text);
  $("#talk-end").hidden = true;
  $("#talk-mic").disabled = true;
  const start = $("#talk-start");
  start.hidden = false;
  start.textContent = "Start again";
  talkBadge();
}

function initTalk() {
  const v = $("#talk-video");
  v.addEventListener("timeupdate", watchTv);
  v.addEventListener("ended", watchTv);
  v.addEventListener("error", () => {
    const c = talk.current;
    if (c) c.report("failed", `the film cannot be played here: ${(v.error && v.error.message) || "media error"}`);
  });
  // timeupdate comes every ~250 ms; the clip's end is watched closer.
  setInterval(watchTv, 30);
  $("#talk-start").addEventListener("click", talkStart);
  $("#talk-end").addEventListener("click", async () => {
    const btn = $("#talk-end");
    btn.disabled = true;
    try {
      await api("POST", `/api/sessions/${encodeURIComponent(talk.sid)}/end`);
      if (!talk.ended) talkOver("The session ended.");
    } catch (err) {
      talkMsg(`Could not end the session: ${err.message}`, "error");
      btn.disabled = false;
    }
  });
  $("#talk-mic").addEventListener("click", () => {
    if (!talk.ctx) return;
    talk.micOn = !talk.micOn;
    // Muted: whatever was being said is finished now.
    talkSend({ type: "mic", on: talk.micOn });
    talkBadge();
  });
  talkBadge();
}

// ---------- Pis ----------

async function loadPis() {
  try {
    const { pis } = await api("GET", "/api/pis");
    state.pis = pis;
    renderPiChoice();
    if (!$("#page-pis").hidden) renderPis();
  } catch (err) {
    if (!$("#page-pis").hidden) $("#pis-list").replaceChildren(el("p", { class: "msg error", text: `Cannot read presence: ${err.message}` }));
  }
}

function renderPiChoice() {
  const sel = $("#start-pi");
  const current = sel.value;
  const opts = [el("option", { value: "", text: "any Pi" })];
  for (const p of state.pis) {
    const full = p.max_sessions && p.sessions.length >= p.max_sessions;
    opts.push(el("option", { value: p.pi_id, text: `${p.pi_id} · ${p.status}${full ? " · busy" : ""}`, disabled: p.status === "offline" }));
  }
  sel.replaceChildren(...opts);
  if ([...sel.options].some((o) => o.value === current)) sel.value = current;
  else {
    const online = state.pis.find((p) => p.status === "online");
    if (online) sel.value = online.pi_id;
  }
}

function renderPis() {
  const list = $("#pis-list");
  if (!state.pis.length) {
    list.replaceChildren(el("p", { class: "empty", text: "No Pi has announced itself. Start pi-spawner on a Pi (or `./scripts/up` for the simulated one)." }));
    return;
  }
  // Keep open device pickers: update cards in place.
  for (const p of state.pis) {
    let card = list.querySelector(`[data-pi="${CSS.escape(p.pi_id)}"]`);
    if (!card) {
      card = piCard(p);
      list.append(card);
    }
    updatePiCard(card, p);
  }
  for (const card of list.querySelectorAll("[data-pi]")) {
    if (!state.pis.some((p) => p.pi_id === card.dataset.pi)) card.remove();
  }
  list.querySelector(".empty")?.remove();
}

function piCard(p) {
  const select = el("select", { class: "devices", "aria-label": "audio input" });
  const custom = el("input", { type: "text", class: "custom-input", placeholder: "none · alsa:DEVICE · wav:PATH", autocomplete: "off" });
  const listBtn = el("button", { type: "button", class: "ghost", text: "List devices" });
  const useBtn = el("button", { type: "button", text: "Use" });
  const msg = el("p", { class: "msg" });
  const card = el(
    "article",
    { class: "card pi", dataset: { pi: p.pi_id } },
    el("header", { class: "row spread" }, el("div", {}, el("span", { class: "dot" }), " ", el("strong", { class: "pi-id", text: p.pi_id }), " ", el("span", { class: "presence" })), el("span", { class: "muted hb" })),
    el(
      "dl",
      { class: "facts" },
      el("dt", { text: "Host" }), el("dd", { class: "host" }),
      el("dt", { text: "Sessions" }), el("dd", { class: "sessions" }),
      el("dt", { text: "Player" }), el("dd", { class: "player" }),
      el("dt", { text: "Last issue" }), el("dd", { class: "issue" }),
      el("dt", { text: "Audio input" }), el("dd", { class: "input" }),
      el("dt", { text: "Input level" }), el("dd", {}, el("div", { class: "meter", role: "meter", "aria-valuemin": "0", "aria-valuemax": "1" }, el("div", { class: "bar" }))),
    ),
    el("p", { class: "msg warn media-warning", role: "alert", hidden: true }),
    el("div", { class: "row wrap" }, select, custom, listBtn, useBtn),
    msg,
  );
  const fillDevices = (d) => {
    const opts = [el("option", { value: "", text: "choose a device…" }), el("option", { value: "none", text: "none (no microphone)" })];
    for (const dev of d.devices || []) {
      const id = dev.replace(/ \(.*\)$/, "");
      opts.push(el("option", { value: `alsa:${id}`, text: dev }));
    }
    select.replaceChildren(...opts);
    if (d.audio_input && [...select.options].some((o) => o.value === d.audio_input)) select.value = d.audio_input;
  };
  fillDevices({ devices: p.audio_devices });
  listBtn.addEventListener("click", async () => {
    msg.textContent = "Asking the Pi…";
    msg.className = "msg";
    try {
      const d = await api("GET", `/api/pis/${encodeURIComponent(p.pi_id)}/devices`);
      fillDevices(d);
      msg.textContent = d.error ? `The Pi cannot list devices: ${d.error}` : `${d.devices.length} capture device(s).`;
      msg.className = d.error ? "msg error" : "msg ok";
    } catch (err) {
      msg.textContent = err.message;
      msg.className = "msg error";
    }
  });
  useBtn.addEventListener("click", async () => {
    const value = custom.value.trim() || select.value;
    if (!value) {
      msg.textContent = "Choose a device or type an input.";
      msg.className = "msg error";
      return;
    }
    useBtn.disabled = true;
    try {
      const d = await api("POST", `/api/pis/${encodeURIComponent(p.pi_id)}/audio_input`, { audio_input: value });
      msg.textContent = `The Pi now hears ${d.audio_input}.`;
      msg.className = "msg ok";
      custom.value = "";
      loadPis();
    } catch (err) {
      msg.textContent = err.message;
      msg.className = "msg error";
    } finally {
      useBtn.disabled = false;
    }
  });
  return card;
}

function updatePiCard(card, p) {
  card.classList.remove("online", "stale", "offline");
  card.classList.add(p.status);
  $(".presence", card).textContent = p.status;
  $(".hb", card).textContent = `heartbeat ${fmtDuration(p.heartbeat_age_ms / 1000)} ago`;
  $(".host", card).textContent = `${p.host || "?"} · pi-spawner ${p.version}`;
  const sessions = $(".sessions", card);
  sessions.replaceChildren(
    ...(p.sessions.length ? p.sessions.map((sid) => el("code", { title: sid, text: shortId(sid) })) : [el("span", { class: "muted", text: "none" })]),
    el("span", { class: "muted", text: ` (of ${p.max_sessions || "?"})` }),
  );
  $(".player", card).textContent = state.piPlayer.get(p.pi_id) || (p.sessions.length ? "idle" : "—");
  $(".issue", card).textContent = state.piIssues.get(p.pi_id) || "none";
  $(".input", card).textContent = p.audio_input || "(the Pi's default)";
  const warning = $(".media-warning", card);
  warning.textContent = p.media_warning || "";
  warning.hidden = !p.media_warning;
  card.dataset.sessions = p.sessions.join(",");
}

function drawLevels() {
  const now = Date.now();
  const mine = talk.sid && state.levels.get(talk.sid);
  const level = mine && now - mine.at < 1000 ? mine.level : 0;
  $("#talk-meter .bar").style.width = `${Math.min(100, Math.sqrt(level) * 100).toFixed(1)}%`;
  $("#talk-meter").setAttribute("aria-valuenow", level.toFixed(3));
  talk.meterMax = Math.max(talk.meterMax, level);
  for (const card of document.querySelectorAll(".pi[data-pi]")) {
    const sids = (card.dataset.sessions || "").split(",").filter(Boolean);
    let level = 0;
    for (const sid of sids) {
      const l = state.levels.get(sid);
      if (l && now - l.at < 1000) level = Math.max(level, l.level);
    }
    const bar = $(".meter .bar", card);
    if (bar) {
      // Levels are RMS amplitudes: a square root makes speech visible.
      bar.style.width = `${Math.min(100, Math.sqrt(level) * 100).toFixed(1)}%`;
      $(".meter", card).setAttribute("aria-valuenow", level.toFixed(3));
    }
  }
}

// ---------- library ----------

async function loadFilms() {
  try {
    const { films, ingest, clip_count, loading } = await api("GET", "/api/clips/films");
    const rows = (films || []).map((f) => {
      const scenes = Number(f.scene_count) || 0;
      const lines = (Number(f.clip_count) || 0) - scenes;
      return el(
        "tr",
        {},
        el("td", { text: f.title || f.id }),
        el("td", { text: fmtSecs(f.duration_s) }),
        el("td", { class: "num", text: lines }),
        el("td", { class: "num", text: scenes }),
        el("td", { text: f.subtitles || "none" }),
      );
    });
    $("#films tbody").replaceChildren(...rows);
    const clips = clip_count ?? (films || []).reduce((n, f) => n + (f.clip_count || 0), 0);
    let status = `${(films || []).length} film(s), ${clips} clip(s) indexed.`;
    if (ingest) {
      const when = ingest.finished_at_ms ? ` at ${fmtTime(ingest.finished_at_ms)}` : "";
      status += ` Last ingest${when}: ${ingest.added || 0} added, ${ingest.updated || 0} updated, ${ingest.unchanged || 0} unchanged, ${ingest.removed || 0} removed, ${ingest.failed || 0} not playable (${Number(ingest.seconds || 0).toFixed(1)} s).`;
    }
    if (ingest && ingest.running) {
      status = `${loading ? "Ingesting the library (first start: no clips are served until it ends)" : "Ingesting new and changed films"}: ${ingest.progress_done || 0} of ${ingest.progress_todo || 0} films done. ${loading ? "" : status}`;
      clearTimeout(state.timers.films);
      state.timers.films = setTimeout(() => !$("#page-library").hidden && loadFilms(), 2000);
    }
    $("#library-status").textContent = status;
    $("#library-status").className = "msg";
    const problems = (ingest && ingest.problems) || [];
    $("#ingest-problems").replaceChildren(...problems.map((p) => el("li", { text: p })));
    $("#ingest-problems").hidden = problems.length === 0;
  } catch (err) {
    $("#library-status").textContent = `Cannot list films: ${err.message}`;
    $("#library-status").className = "msg error";
  }
}

async function reloadLibrary() {
  try {
    await api("POST", "/api/clips/reload");
    $("#library-status").textContent = "Reloading the library…";
    $("#library-status").className = "msg";
    setTimeout(loadFilms, 500);
  } catch (err) {
    $("#library-status").textContent = `Cannot reload: ${err.message}`;
    $("#library-status").className = "msg error";
  }
}

async function search(e) {
  e.preventDefault();
  const q = $("#search-q").value.trim();
  const mode = $("#search-mode").value;
  const msg = $("#search-msg");
  if (!q) return;
  msg.textContent = "Searching…";
  msg.className = "msg";
  try {
    const r = await api("GET", `/api/clips/search?q=${encodeURIComponent(q)}&mode=${mode}&limit=20`);
    msg.textContent = `${r.hits.length} hit(s) among ${r.library_size} clips.`;
    $("#search-results").replaceChildren(
      ...r.hits.map((h) => {
        const c = h.clip || {};
        const scene = String(c.kind || "").toLowerCase().includes("scene");
        const thumb = c.thumbnail ? el("img", { class: "thumb", src: c.thumbnail, alt: "", loading: "lazy" }) : el("div", { class: "thumb placeholder", "aria-hidden": "true" });
        return el(
          "li",
          { class: "result" },
          thumb,
          el("div", { class: "clip-body" }, el("q", { class: "caption", text: c.caption || (scene ? "(a scene without words)" : "") }), scene ? el("span", { class: "tag", text: "scene" }) : null, el("div", { class: "clip-meta" }, el("span", { class: "film", text: c.film_title }), " · ", el("span", { class: "range", text: fmtRange(c.start_s, c.end_s) }), el("span", { class: "muted", text: ` · score ${Number(h.score).toFixed(2)}` })), c.cue ? el("div", { class: "muted cue", text: `answers “${c.cue}”` }) : null),
          el("button", { type: "button", class: "ghost", text: "Preview", onclick: () => preview(c.id) }),
        );
      }),
    );
  } catch (err) {
    msg.textContent = err.message;
    msg.className = "msg error";
  }
}

async function preview(id) {
  const box = $("#preview");
  $("#preview-card").hidden = false;
  box.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  try {
    const r = await api("GET", `/api/clips/${encodeURIComponent(id)}`);
    const c = r.clip || {};
    const video = el("video", { controls: true, preload: "metadata", playsinline: true, src: `${r.media_url}#t=${Number(c.start_s).toFixed(2)},${Number(c.end_s).toFixed(2)}` });
    box.replaceChildren(video, el("p", {}, el("q", { class: "caption", text: c.caption })), el("p", { class: "muted", text: `${c.film_title} · ${fmtRange(c.start_s, c.end_s)} · ${c.id}` }));
    $("#preview-card").scrollIntoView({ behavior: "smooth", block: "nearest" });
  } catch (err) {
    box.replaceChildren(el("p", { class: "msg error", text: err.message }));
  }
}

// ---------- health ----------

async function loadHealth() {
  try {
    const h = await api("GET", "/api/health/services");
    const rows = h.instances.map((i) =>
      el(
        "tr",
        { class: i.errors ? "has-errors" : "" },
        el("td", {}, el("strong", { text: i.name })),
        el("td", { text: i.version }),
        el("td", { title: i.id }, el("code", { text: shortId(i.id) })),
        el("td", { text: fmtDuration(i.uptime_s) }),
        el("td", { class: "num", text: i.requests }),
        el("td", { class: `num ${i.errors ? "bad" : ""}`, text: i.errors }),
        el("td", { class: "num", text: i.requests ? `${i.average_processing_ms.toFixed(1)} ms` : "—" }),
      ),
    );
    for (const name of h.missing) {
      rows.push(el("tr", { class: "missing" }, el("td", {}, el("strong", { text: name })), el("td", { colspan: "6", class: "bad", text: "missing: no instance answers" })));
    }
    $("#services tbody").replaceChildren(...rows);
    const n = h.nats;
    $("#nats-status").textContent = `NATS ${n.status} · server ${n.server_version}${n.jetstream ? " · JetStream" : ""} · ${h.instances.length} service instance(s)${h.decode_errors ? ` · ${h.decode_errors} undecodable message(s)` : ""}`;
    $("#nats-status").className = n.status === "ok" && !h.missing.length ? "msg ok" : "msg error";
  } catch (err) {
    $("#nats-status").textContent = `Cannot read health: ${err.message}`;
    $("#nats-status").className = "msg error";
  }
}

// ---------- pages ----------

function showPage() {
  const page = (location.hash || "#sessions").slice(1);
  const known = ["sessions", "talk", "pis", "library", "health"].includes(page) ? page : "sessions";
  for (const p of document.querySelectorAll(".page")) p.hidden = p.dataset.page !== known;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === known);
  clearInterval(state.timers.page);
  if (known === "pis") {
    renderPis();
    loadPis();
    state.timers.page = setInterval(loadPis, 3000);
  } else if (known === "library") {
    loadFilms();
  } else if (known === "health") {
    loadHealth();
    state.timers.page = setInterval(loadHealth, 5000);
  }
}

async function start(e) {
  e.preventDefault();
  const btn = $("#start-btn");
  const msg = $("#start-msg");
  const pi = $("#start-pi").value;
  btn.disabled = true;
  msg.textContent = "Starting…";
  msg.className = "msg";
  try {
    const r = await api("POST", "/api/connect", pi ? { pi_id: pi } : {});
    sessionCard(r.identifier, { pi_id: r.pi_id });
    msg.textContent = `Session ${shortId(r.identifier)} started on ${r.pi_id}.`;
    msg.className = "msg ok";
  } catch (err) {
    msg.textContent = `Could not start: ${err.message}`;
    msg.className = "msg error";
  } finally {
    btn.disabled = false;
  }
}

async function init() {
  $("#start-form").addEventListener("submit", start);
  $("#search-form").addEventListener("submit", search);
  $("#reload-library").addEventListener("click", reloadLibrary);
  $("#past-refresh").addEventListener("click", refreshPast);
  $("#health-refresh").addEventListener("click", loadHealth);
  $("#token-btn").addEventListener("click", () => askToken() && connectStreams());
  initTalk();
  window.addEventListener("hashchange", showPage);
  try {
    const info = await api("GET", "/api/info");
    state.auth = info.auth;
    $("#token-btn").hidden = !info.auth;
    if (info.auth && !state.token) askToken();
  } catch (err) {
    toast(err.message);
  }
  connectStreams();
  showPage();
  loadPis();
  loadLiveSessions();
  // Presence ages for the start form's Pi list.
  setInterval(() => $("#page-pis").hidden && loadPis(), 10000);
  setInterval(drawLevels, 500);
}

init();
