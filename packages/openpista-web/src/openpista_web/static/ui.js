// Rendering of the conversation: messages, the streamed answer, tool activity, approvals.

const log = document.getElementById("log");
let streaming = null; // the bubble of the answer being streamed

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text) node.textContent = text;
  return node;
}

function add(node) {
  document.getElementById("empty")?.remove();
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  log.append(node);
  if (stick) node.scrollIntoView({ block: "end" });
  return node;
}

/** Text with ``` fences shown as code blocks (everything else as plain text). */
function fill(node, text) {
  node.textContent = "";
  text.split(/```[^\n]*\n?/).forEach((part, i) => {
    if (!part) return;
    node.append(i % 2 ? el("pre", "", part) : document.createTextNode(part));
  });
}

function images(node, attachments) {
  for (const a of attachments || []) {
    if (a.data && a.mime_type.startsWith("image/")) {
      const img = el("img");
      img.src = `data:${a.mime_type};base64,${a.data}`;
      img.alt = a.name;
      node.append(img);
    } else {
      node.append(el("div", "note", `📎 ${a.name}`));
    }
  }
}

export function clear() {
  log.textContent = "";
  streaming = null;
}

export function userMessage(text, attachments) {
  const node = el("div", "msg user");
  if (text) fill(node, text);
  images(node, attachments);
  return add(node);
}

export function note(text, error = false) {
  return add(el("p", error ? "note msg error" : "note", text));
}

export function history(messages) {
  clear();
  for (const m of messages) {
    if (m.role === "user") userMessage(m.text);
    else fill(add(el("div", "msg bot")), m.text);
  }
  if (!messages.length) log.append(el("p", "note", "New conversation. Type /help for commands."));
}

function endStream() {
  if (streaming) streaming.classList.remove("streaming");
  const done = streaming;
  streaming = null;
  return done;
}

/** One AgentResponse from the server; `answer(id, approve)` answers an approval. */
export function response(r, answer) {
  if (r.approval) return approval(r.approval, answer);
  if (r.tool_call) {
    endStream();
    const args = JSON.stringify(r.tool_call.arguments);
    return add(el("p", "tool", `⚙ ${r.tool_call.name} ${args.length > 120 ? args.slice(0, 119) + "…" : args}`));
  }
  if (r.tool_result) {
    endStream();
    const t = r.tool_result;
    const first = (t.output.trim().split("\n")[0] || "").slice(0, 120);
    return add(el("p", t.is_error ? "tool failed" : "tool", `${t.is_error ? "✗" : "✓"} ${t.name}: ${first}`));
  }
  if (r.delta) {
    if (!streaming) {
      streaming = add(el("div", "msg bot streaming"));
      streaming.setAttribute("aria-busy", "true");
      streaming.append(document.createTextNode(""));
    }
    streaming.lastChild.appendData(r.text);
    return streaming;
  }
  const node = endStream() || add(el("div", "msg bot"));
  node.removeAttribute("aria-busy");
  node.classList.toggle("error", r.is_error);
  if (r.text || !r.attachments.length) fill(node, r.text || "(no answer)");
  images(node, r.attachments);
  node.scrollIntoView({ block: "end" });
  return node;
}

function approval(req, answer) {
  endStream();
  const box = el("div", "approval");
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", `Approval for ${req.tool}`);
  const args = Object.entries(req.arguments).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
  box.append(el("p", "", `🔐 ${req.tool}(${args})${req.reason ? "\n" + req.reason : ""}`));
  const yes = el("button", "approve", "Approve");
  const no = el("button", "deny", "Deny");
  const decide = (approve) => {
    if (!answer(req.id, approve)) return;
    yes.disabled = no.disabled = true;
    box.append(el("p", "done", approve ? "Approved" : "Denied"));
  };
  yes.onclick = () => decide(true);
  no.onclick = () => decide(false);
  box.append(yes, no);
  add(box);
  yes.focus({ preventScroll: true });
  return box;
}
