// openpista web client: glue between the connection, the composer and the conversation.
import { Connection } from "./conn.js";
import { icon } from "./icons.js";
import * as ui from "./ui.js";

const $ = (id) => document.getElementById(id);
const store = {
  get: (k) => { try { return localStorage.getItem("openpista." + k); } catch { return null; } },
  set: (k, v) => { try { v == null ? localStorage.removeItem("openpista." + k) : localStorage.setItem("openpista." + k, v); } catch {} },
};

// A pairing link carries the token in the #fragment: keep it, then hide it from the address bar.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  store.set("token", fragment.get("token"));
  history.replaceState(null, "", location.pathname + location.search);
}

function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // works without https too
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
let clientId = store.get("client");
if (!clientId) store.set("client", (clientId = newClientId()));

let limits = { max_image_bytes: 1048576, max_attachments: 4 };
let pending = []; // images waiting to be sent: {name, mime_type, data, url}
let lastSent = "";

const status = $("status");
const STATES = { online: "online", connecting: "connecting…", offline: "offline", "signed-out": "signed out", limited: "refused" };
const span = (s) => (s < 90 ? `${s}s` : `${Math.ceil(s / 60)} min`);
function setState(state, retryIn) {
  status.dataset.state = state;
  status.textContent = STATES[state] + (retryIn != null && state !== "online" ? ` · retry in ${span(retryIn)}` : "");
  status.title = state === "limited" ? "Too many wrong tokens were tried from this address" : "";
  if (state === "limited" && !warned) {
    warned = true;
    const at = new Date(Date.now() + retryIn * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    ui.note(`Refused: too many wrong tokens were tried from this address. It tries again on its own at ${at} (in ${span(retryIn)}); check the token meanwhile.`, true);
  }
  if (state === "online") warned = false;
}
let warned = false; // the "too many wrong tokens" note is shown once per refusal

const conn = new Connection({
  token: () => store.get("token"),
  clientId,
  onState: setState,
  onFrame: frame,
  onAuthFailed: (refused) => askToken(refused ? "That token was refused. Check it and try again." : ""),
});

function frame(f) {
  switch (f.type) {
    case "hello":
      limits = f;
      document.body.dataset.session = f.session_id || "";
      break;
    case "history":
    case "session":
      document.body.dataset.session = f.session_id || "";
      ui.history(f.messages);
      if (f.type === "session") ui.note(`session ${f.session_id}`);
      break;
    case "response":
      ui.response(f.response, answer);
      break;
    case "notice":
      ui.note(f.text, f.is_error);
      break;
    case "decision":
      ui.decision(f);
      break;
    case "worker":
      ui.worker(f);
      break;
    case "error":
      ui.working(false);
      ui.note(f.message, true);
      break;
  }
}

function answer(id, approve) {
  if (conn.send({ type: "approval", id, approve })) return true;
  ui.note("Not connected: try again when the status says online.", true);
  return false;
}

// -- sign in ------------------------------------------------------------------------------
function askToken(error) {
  $("login-error").textContent = error;
  if (!$("login").open) $("login").showModal();
  $("token").focus();
}
$("login-form").addEventListener("submit", () => {
  store.set("token", $("token").value.trim());
  $("token").value = "";
  conn.connect();
});

// -- composer -----------------------------------------------------------------------------
const input = $("input");
function grow() {
  input.style.height = "auto";
  input.style.height = input.scrollHeight + "px";
}
input.addEventListener("input", grow);
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("composer").requestSubmit();
  } else if (e.key === "ArrowUp" && !input.value && lastSent) {
    e.preventDefault();
    input.value = lastSent;
    grow();
  }
});
$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text && !pending.length) return;
  const attachments = pending.map(({ name, mime_type, data }) => ({ name, mime_type, data }));
  if (!conn.send({ type: "message", text, attachments })) {
    ui.note("Not connected: your message is still in the box.", true);
    return;
  }
  if (!text.startsWith("/") || attachments.length) {
    ui.userMessage(text, attachments);
    ui.working(true);
  } else ui.note(text);
  lastSent = text;
  input.value = "";
  grow();
  pending = [];
  renderPreviews();
});

// -- images -------------------------------------------------------------------------------
function readDataUrl(blob) {
  return new Promise((ok, fail) => {
    const r = new FileReader();
    r.onload = () => ok(r.result);
    r.onerror = () => fail(r.error);
    r.readAsDataURL(blob);
  });
}

/** Shrink a picture (longest side, then JPEG quality) until it fits the server's limit. */
async function fit(file) {
  const cap = limits.max_image_bytes;
  if (file.size <= cap) return file;
  const bitmap = await createImageBitmap(file);
  for (const [side, quality] of [[2048, 0.85], [1600, 0.8], [1280, 0.7], [960, 0.6], [640, 0.5]]) {
    const scale = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((ok) => canvas.toBlob(ok, "image/jpeg", quality));
    if (blob && blob.size <= cap) return blob;
  }
  throw new Error("too large even after shrinking");
}

async function addImages(files) {
  for (const file of files) {
    if (!file.type.startsWith("image/")) continue;
    if (pending.length >= limits.max_attachments) {
      ui.note(`At most ${limits.max_attachments} images per message.`, true);
      break;
    }
    try {
      const blob = await fit(file);
      const url = await readDataUrl(blob);
      pending.push({ name: file.name || "pasted.png", mime_type: blob.type || file.type, data: url.split(",")[1], url });
    } catch (err) {
      ui.note(`${file.name || "image"}: ${err.message}`, true);
    }
  }
  renderPreviews();
}

function renderPreviews() {
  const box = $("previews");
  box.textContent = "";
  pending.forEach((p, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.title = `Remove ${p.name}`;
    const img = document.createElement("img");
    img.src = p.url;
    img.alt = `Remove ${p.name}`;
    b.append(img);
    b.onclick = () => { pending.splice(i, 1); renderPreviews(); input.focus(); };
    box.append(b);
  });
}

$("attach").addEventListener("change", (e) => { addImages([...e.target.files]); e.target.value = ""; });
input.addEventListener("paste", (e) => {
  const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
  if (files.length) { e.preventDefault(); addImages(files); }
});

// -- lifecycle ----------------------------------------------------------------------------
$("send").prepend(icon("send"));
document.querySelector("label.icon").prepend(icon("image"));
addEventListener("online", () => conn.nudge());
document.addEventListener("visibilitychange", () => { if (!document.hidden) conn.nudge(); });
if ("serviceWorker" in navigator && isSecureContext) navigator.serviceWorker.register("sw.js").catch(() => {});
conn.connect();
input.focus();
