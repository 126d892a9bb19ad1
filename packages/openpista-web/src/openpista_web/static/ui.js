// Rendering of the conversation: messages, the streamed answer, tool activity, approvals.
import { icon } from "./icons.js";
import { render } from "./md.js";

const log = document.getElementById("log");
const FOLLOW_WITHIN = 48; // px from the bottom that still count as "at the bottom"
let streaming = null; // the bubble of the answer being streamed
let follow = true; // keep the newest content in view (false once the user scrolls up)
let lastTop = 0;
const approvals = new Map(); // approval id -> {settle(decision)}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text) node.textContent = text;
  return node;
}

// -- following the conversation ------------------------------------------------------------
const jump = el("button", "jump");
jump.type = "button";
jump.title = "Show the newest messages";
jump.setAttribute("aria-label", "Show the newest messages");
jump.append(icon("down"));
jump.hidden = true;
jump.onclick = () => { follow = true; keepUp(); };
log.after(jump);

log.addEventListener("scroll", () => {
  const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < FOLLOW_WITHIN;
  if (atEnd) follow = true;
  else if (log.scrollTop < lastTop) follow = false; // the user scrolled up (not growth)
  lastTop = log.scrollTop;
  jump.hidden = follow;
}, { passive: true });

/** After content changed: stay at the bottom if the user was there. */
function keepUp() {
  if (follow) log.scrollTop = log.scrollHeight;
  lastTop = log.scrollTop;
  jump.hidden = follow;
}

// -- the working indicator -------------------------------------------------------------------
const busy = el("div", "working");
busy.setAttribute("role", "status");
busy.append(el("span", "dots"), el("span", "sr", "The agent is working…"));

/** Show (or hide) "the agent is working" at the end of the conversation. */
export function working(on) {
  if (on) { log.append(busy); keepUp(); } else busy.remove();
}

function add(node) {
  document.getElementById("empty")?.remove();
  if (busy.isConnected) log.insertBefore(node, busy);
  else log.append(node);
  keepUp();
  return node;
}

/** A message body: markdown, with a leading ❌ shown as an icon on errors. */
function fill(node, text, error = false) {
  const shown = error ? text.replace(/^❌\s*/, "") : text;
  render(node, shown);
  if (error) node.prepend(icon("alert"));
}

function images(node, attachments) {
  for (const a of attachments || []) {
    if (a.data && a.mime_type.startsWith("image/")) {
      const img = el("img");
      img.src = `data:${a.mime_type};base64,${a.data}`;
      img.alt = a.name;
      node.append(img);
    } else {
      const file = el("div", "file", a.name);
      file.prepend(icon("file"));
      node.append(file);
    }
  }
}

export function clear() {
  log.textContent = "";
  streaming = null;
  approvals.clear();
}

export function userMessage(text, attachments) {
  const node = el("div", "msg user");
  if (text) render(node, text);
  images(node, attachments);
  follow = true; // what you just sent is always shown
  return add(node);
}

export function note(text, error = false) {
  const node = el("p", error ? "note error" : "note", error ? text.replace(/^❌\s*/, "") : text);
  if (error) node.prepend(icon("alert"));
  return add(node);
}

export function history(messages) {
  clear();
  working(false);
  for (const m of messages) {
    if (m.role === "user") userMessage(m.text);
    else fill(add(el("div", "msg bot")), m.text);
  }
  if (!messages.length) log.append(el("p", "note", "New conversation. Type /help for commands."));
  follow = true;
  keepUp();
}

function endStream() {
  const done = streaming;
  streaming = null;
  if (done) done.classList.remove("streaming");
  return done;
}

function toolLine(cls, name, text) {
  const line = el("p", cls, text);
  line.prepend(icon(name));
  return add(line);
}

const workers = new Map(); // task id -> its line in the conversation

/** A worker event of a task this chat started: one line per task, updated in place. */
export function worker(w) {
  const final = { finished: "check", failed: "cross", ended: "cross" }[w.event];
  const last = (w.log || []).at(-1);
  const parts = [`worker ${String(w.task_id).slice(0, 8)}`, w.event];
  if (w.percent != null && !final) parts.push(`${Math.round(w.percent)}%`);
  if (w.exit_code != null) parts.push(`exit ${w.exit_code}`);
  if (last) parts.push(String(last).slice(0, 120));
  let line = workers.get(w.task_id);
  if (w.event === "ended" && line?.dataset.final) return; // its credential ended after its report
  if (!line || !line.isConnected) {
    line = toolLine("tool worker", "tool", "");
    workers.set(w.task_id, line);
  }
  line.className = w.event === "failed" || w.event === "ended" ? "tool worker failed" : "tool worker";
  line.replaceChildren(icon(final || "tool"), document.createTextNode(parts.join(" · ")));
  if (final) line.dataset.final = w.event;
  keepUp();
}

/** One outbound message from the server (its `kind`: approval, tool, chunk or answer);
 * `answer(id, approve)` answers an approval. */
export function response(r, answer) {
  if (r.kind === "approval") { working(false); return approval(r.request, answer); }
  if (r.kind === "tool" && !r.result) {
    endStream();
    working(true);
    const args = JSON.stringify(r.call.arguments);
    return toolLine("tool", "tool", `${r.call.name} ${args.length > 120 ? args.slice(0, 119) + "…" : args}`);
  }
  if (r.kind === "tool") {
    endStream();
    working(true);
    const t = r.result;
    const first = (t.output.trim().split("\n")[0] || "").slice(0, 120);
    return toolLine(t.is_error ? "tool failed" : "tool", t.is_error ? "cross" : "check", `${t.name}: ${first}`);
  }
  if (r.kind === "chunk") {
    working(false);
    if (!streaming) {
      streaming = add(el("div", "msg bot streaming"));
      streaming.setAttribute("aria-busy", "true");
      streaming.raw = "";
    }
    streaming.raw += r.text;
    render(streaming, streaming.raw);
    keepUp();
    return streaming;
  }
  working(false);
  const node = endStream() || add(el("div", "msg bot"));
  node.removeAttribute("aria-busy");
  node.classList.toggle("error", r.is_error);
  if (r.text || !r.attachments.length) fill(node, r.text || "(no answer)", r.is_error);
  images(node, r.attachments);
  keepUp();
  return node;
}

// -- approvals -------------------------------------------------------------------------------
function ask(req) {
  const tool = req.tool;
  if (tool === "system.run" && typeof req.arguments.command === "string") return "run this command on your computer:";
  if (tool.startsWith("browser.")) return `control the web browser (${tool}):`;
  if (/^(screen|mouse|keyboard|desktop)\./.test(tool)) return `control the screen (${tool}):`;
  if (tool === "container.run") return "run this in a container:";
  return `use the tool ${tool}:`;
}

function why(reason) {
  const rule = /^rule (\d+)/.exec(reason || "");
  if (rule) return `It asks because rule ${rule[1]} of your tool policy says to ask first.`;
  if (/policy\.remote/.test(reason)) return "It asks because your settings want your OK before anything runs for a remote chat like this one.";
  if (/policy\.local/.test(reason)) return "It asks because your settings want your OK before anything runs, even on this computer.";
  return reason ? `It asks because: ${reason}.` : "";
}

function approval(req, answer) {
  endStream();
  const box = el("div", "approval");
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", `The agent asks to ${ask(req).replace(/:$/, "")}`);
  box.title = req.reason; // the policy's own words, for whoever tunes [policy]
  const title = el("p", "ask", `The agent wants to ${ask(req)}`);
  title.prepend(icon("lock"));
  const { command, ...rest } = req.arguments;
  const shown = req.tool === "system.run" && typeof command === "string" ? command : JSON.stringify(req.arguments, null, 2);
  const what = el("pre", "", shown.length > 4000 ? shown.slice(0, 3999) + "…" : shown);
  box.append(title, what);
  if (shown === command && Object.keys(rest).length) box.append(el("p", "why", "with " + JSON.stringify(rest)));
  const minutes = req.timeout >= 90 ? `${Math.round(req.timeout / 60)} minutes` : `${Math.round(req.timeout)} seconds`;
  box.append(el("p", "why", `${why(req.reason)} No answer within ${minutes} counts as no.`.trim()));
  const yes = el("button", "approve", "Allow");
  const no = el("button", "deny", "Deny");
  const state = el("p", "done");
  state.setAttribute("aria-live", "polite");
  const settle = (text) => {
    yes.disabled = no.disabled = true;
    state.textContent = text;
    approvals.delete(req.id);
    clearTimeout(expiry);
  };
  const decide = (approve) => {
    if (!answer(req.id, approve)) return;
    yes.disabled = no.disabled = true;
    state.textContent = "Sending your answer…";
  };
  yes.onclick = () => decide(true);
  no.onclick = () => decide(false);
  const expiry = setTimeout(() => settle("Not answered in time: it did not run."), req.timeout * 1000);
  approvals.set(req.id, (d) => {
    if (!d.ok) return settle("This request was already answered, or it expired.");
    settle(d.approve ? "Allowed: it runs now." : "Not allowed: it will not run.");
    if (d.approve) working(true);
  });
  box.append(yes, no, state);
  add(box);
  yes.focus({ preventScroll: true });
  return box;
}

/** The server's verdict on an approval answered from this browser (any of its tabs). */
export function decision(d) {
  approvals.get(d.id)?.(d);
}
