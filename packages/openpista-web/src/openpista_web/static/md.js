// A small, safe markdown renderer: text becomes DOM nodes built with textContent only.
// Supported: headings, paragraphs, bold/italic/strike, inline code, fenced code (with a copy
// button), lists, blockquotes, tables, rules, and links to http(s)/mailto. Raw HTML stays
// text; images become links (nothing is loaded from a URL).
import { icon } from "./icons.js";

const MAX_DEPTH = 8; // nesting (quotes, lists, emphasis) deeper than this stays plain text
const SCHEMES = ["http:", "https:", "mailto:"];
const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };

function el(tag, cls) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  return node;
}

/** The absolute http(s)/mailto address in `raw`, or null for anything else. */
export function safeUrl(raw) {
  try {
    const url = new URL(raw.trim());
    return SCHEMES.includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(href, label) {
  const a = el("a");
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  a.append(label);
  return a;
}

// -- inline ------------------------------------------------------------------------------
const PUNCT = /[!-/:-@[-`{-~]/;
const SPACE = /\s/;
const WORD = /[\p{L}\p{N}]/u;

/** The index of the closing `delim` for an opener ending at `from`, or -1. */
function closer(text, from, delim) {
  const c = delim[0];
  for (let j = text.indexOf(delim, from); j !== -1; j = text.indexOf(delim, j + 1)) {
    if (text[j - 1] === "\\") continue;
    let end = j;
    while (text[end] === c) end++;
    const at = end - delim.length; // a longer run closes with its last characters
    if (at <= from || SPACE.test(text[at - 1])) { j = end - 1; continue; }
    if (c === "_" && WORD.test(text[end] || "")) { j = end - 1; continue; }
    return at;
  }
  return -1;
}

/** Find the `]` matching the `[` at `i` (brackets nest, escapes skip), at most 4 KB on. */
function bracket(text, i, open, close) {
  for (let depth = 0, j = i, stop = Math.min(text.length, i + 4096); j < stop; j++) {
    if (text[j] === "\\") j++;
    else if (text[j] === open) depth++;
    else if (text[j] === close && --depth === 0) return j;
  }
  return -1;
}

function entity(text, i) {
  const m = /^&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|[a-z]{2,6});/i.exec(text.slice(i, i + 12));
  if (!m) return null;
  const name = m[1];
  let value = ENTITIES[name.toLowerCase()];
  if (name[0] === "#") {
    const code = name[1] === "x" || name[1] === "X" ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
    value = code > 0 && code <= 0x10ffff && (code < 0xd800 || code > 0xdfff) ? String.fromCodePoint(code) : "\ufffd";
  }
  return value == null ? null : [value, m[0].length];
}

/** Append the inline content of `text` to `out`. */
export function inline(text, out, depth = 0, inLink = false) {
  let buf = "";
  const misses = {}; // delimiter -> position from which no closer exists (keeps this linear)
  const flush = () => { if (buf) out.append(buf); buf = ""; };
  const emit = (node) => { flush(); out.append(node); };
  for (let i = 0; i < text.length; ) {
    const c = text[i];
    if (c === "\\" && PUNCT.test(text[i + 1] || "")) { buf += text[i + 1]; i += 2; continue; }
    if (c === "\\" && text[i + 1] === "\n") { emit(el("br")); i += 2; continue; }
    if (c === "\n") { emit(el("br")); i++; continue; }
    if (c === "`") {
      let n = 1;
      while (text[i + n] === "`") n++;
      const run = "`".repeat(n);
      const end = misses[run] != null ? -1 : text.indexOf(run, i + n);
      if (end === -1) { misses[run] = i; buf += run; i += n; continue; }
      const code = el("code");
      code.textContent = text.slice(i + run.length, end).replace(/\n/g, " ");
      emit(code);
      i = end + run.length;
      continue;
    }
    if (!inLink && (c === "[" || (c === "!" && text[i + 1] === "["))) {
      const start = c === "!" ? i + 1 : i;
      const close = bracket(text, start, "[", "]");
      const paren = close !== -1 && text[close + 1] === "(" ? bracket(text, close + 1, "(", ")") : -1;
      if (paren !== -1) {
        const target = text.slice(close + 2, paren).trim().replace(/^<(.*)>$/, "$1").split(/\s+/)[0] || "";
        const label = text.slice(start + 1, close);
        const href = safeUrl(target);
        const box = document.createDocumentFragment();
        if (c === "!") box.append(label || target); // an image: never loaded, only linked
        else inline(label, box, depth + 1, true);
        emit(href ? link(href, box) : box);
        i = paren + 1;
        continue;
      }
    }
    if (!inLink && c === "<") {
      const m = /^<((?:https?:\/\/|mailto:)[^\s<>]+)>/i.exec(text.slice(i, i + 4096));
      const href = m && safeUrl(m[1]);
      if (href) { emit(link(href, m[1])); i += m[0].length; continue; }
    }
    if (!inLink && /^https?:\/\//i.test(text.slice(i, i + 8)) && !WORD.test(text[i - 1] || "")) {
      const m = /^https?:\/\/[^\s<>"]*[^\s<>"'.,;:!?)\]*_~]/i.exec(text.slice(i, i + 4096));
      const href = m && safeUrl(m[0]);
      if (href) { emit(link(href, m[0])); i += m[0].length; continue; }
    }
    if (c === "&") {
      const found = entity(text, i);
      if (found) { buf += found[0]; i += found[1]; continue; }
    }
    if ((c === "*" || c === "_" || c === "~") && depth < MAX_DEPTH) {
      let n = 0;
      while (text[i + n] === c) n++;
      const flanked = !SPACE.test(text[i + n] || " ") && !(c === "_" && WORD.test(text[i - 1] || ""));
      const sizes = c === "~" ? [2] : n >= 2 ? [2, 1] : [1];
      let done = false;
      for (const size of flanked ? sizes : []) {
        const delim = c.repeat(size);
        if (misses[delim] != null && i >= misses[delim]) continue;
        const end = closer(text, i + size, delim);
        if (end === -1) { misses[delim] = i; continue; }
        const node = el(c === "~" ? "del" : size === 2 ? "strong" : "em");
        inline(text.slice(i + size, end), node, depth + 1, inLink);
        emit(node);
        i = end + size;
        done = true;
        break;
      }
      if (!done) { buf += text.slice(i, i + n); i += n; }
      continue;
    }
    buf += c;
    i++;
  }
  flush();
  return out;
}

// -- blocks ------------------------------------------------------------------------------
const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( {0,12})([-*+]|\d{1,9}[.)])([ \t]+|$)(.*)$/;
const TABLE_RULE = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

function cells(line) {
  const parts = [];
  let cell = "";
  const body = line.trim().replace(/^\|/, "");
  for (let i = 0; i < body.length; i++) {
    if (body[i] === "\\" && body[i + 1] === "|") { cell += "|"; i++; }
    else if (body[i] === "|") { parts.push(cell.trim()); cell = ""; }
    else cell += body[i];
  }
  if (cell.trim() || !body.endsWith("|")) parts.push(cell.trim());
  return parts;
}

function isTable(lines, i) {
  return lines[i].includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1]) && lines[i + 1].includes("-");
}

function startsBlock(lines, i) {
  const line = lines[i];
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line) || isTable(lines, i);
}

function codeBlock(code, lang) {
  const box = el("div", "code");
  const pre = el("pre");
  const body = el("code");
  body.textContent = code;
  if (lang) body.dataset.lang = lang.slice(0, 30);
  pre.append(body);
  const copy = el("button", "copy");
  copy.type = "button";
  copy.title = "Copy the code";
  copy.setAttribute("aria-label", "Copy the code");
  copy.append(icon("copy"));
  copy.onclick = () => copyText(code, copy);
  box.append(copy, pre);
  return box;
}

async function copyText(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    const area = el("textarea"); // plain http pages have no clipboard API: the old way
    area.value = text;
    document.body.append(area);
    area.select();
    try { ok = document.execCommand("copy"); } catch {}
    area.remove();
  }
  button.classList.toggle("done", ok);
  button.title = ok ? "Copied" : "Copy failed: select the text instead";
  setTimeout(() => { button.classList.remove("done"); button.title = "Copy the code"; }, 1500);
}

function table(lines, i, out) {
  const head = cells(lines[i]);
  const aligns = cells(lines[i + 1]).map((s) => (s.endsWith(":") ? (s.startsWith(":") ? "c" : "r") : ""));
  const t = el("table");
  const row = (texts, tag) => {
    const tr = el("tr");
    head.forEach((_, k) => {
      const cell = el(tag, aligns[k] ? "al-" + aligns[k] : "");
      inline(texts[k] || "", cell, 1);
      tr.append(cell);
    });
    return tr;
  };
  const thead = el("thead");
  thead.append(row(head, "th"));
  const tbody = el("tbody");
  for (i += 2; i < lines.length && lines[i].includes("|") && lines[i].trim(); i++) tbody.append(row(cells(lines[i]), "td"));
  t.append(thead, tbody);
  const wrap = el("div", "table");
  wrap.append(t);
  out.append(wrap);
  return i;
}

function list(lines, i, out, depth) {
  const first = ITEM.exec(lines[i]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const node = el(ordered ? "ol" : "ul");
  if (ordered && parseInt(first[2], 10) !== 1) node.start = parseInt(first[2], 10);
  let loose = false;
  while (i < lines.length) {
    const m = ITEM.exec(lines[i]);
    if (!m || m[1].length !== indent || /\d/.test(m[2]) !== ordered) break;
    const width = indent + m[2].length + Math.max(1, Math.min(4, m[3].length || 1));
    const body = [m[4]];
    for (i++; i < lines.length; i++) {
      const line = lines[i];
      if (!line.trim()) {
        const next = lines[i + 1];
        if (next == null || (!/^\s/.test(next) && !ITEM.test(next))) break;
        const n = ITEM.exec(next);
        if (n && n[1].length <= indent) { loose = true; continue; }
        body.push("");
        continue;
      }
      const lead = line.length - line.trimStart().length;
      if (lead > indent && lead >= Math.min(width, indent + 2)) body.push(line.slice(Math.min(lead, width)));
      else if (!startsBlock(lines, i) && body[body.length - 1] !== "") body.push(line.trim()); // lazy continuation
      else break;
    }
    const li = el("li");
    blocks(body, li, depth + 1, !loose);
    node.append(li);
  }
  out.append(node);
  return i;
}

/** Append the blocks of `lines` to `out`; `tight` puts a lone paragraph inline (list items). */
function blocks(lines, out, depth, tight = false) {
  const start = out.childNodes.length;
  for (let i = 0; i < lines.length; ) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }
    const fence = FENCE.exec(line);
    if (fence) {
      const mark = fence[1];
      const end = new RegExp(`^ {0,3}${mark[0] === "`" ? "`" : "~"}{${mark.length},}[ \\t]*$`);
      const body = [];
      for (i++; i < lines.length && !end.test(lines[i]); i++) body.push(lines[i]);
      i++; // the closing fence (an unterminated one runs to the end)
      out.append(codeBlock(body.join("\n"), fence[2]));
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const h = el("h" + Math.min(6, heading[1].length + 2));
      inline(heading[2] || "", h, 1);
      out.append(h);
      i++;
      continue;
    }
    if (RULE.test(line)) { out.append(el("hr")); i++; continue; }
    if (depth < MAX_DEPTH && QUOTE.test(line)) {
      const inner = [];
      for (; i < lines.length && QUOTE.test(lines[i]); i++) inner.push(QUOTE.exec(lines[i])[1]);
      const quote = el("blockquote");
      blocks(inner, quote, depth + 1);
      out.append(quote);
      continue;
    }
    if (depth < MAX_DEPTH && ITEM.test(line) && ITEM.exec(line)[4].trim()) { i = list(lines, i, out, depth); continue; }
    if (isTable(lines, i)) { i = table(lines, i, out); continue; }
    const para = [line.trim()];
    for (i++; i < lines.length && lines[i].trim() && !startsBlock(lines, i); i++) para.push(lines[i].trim());
    const p = el("p");
    inline(para.join("\n"), p, 0);
    out.append(p);
  }
  if (tight && out.childNodes.length - start >= 1 && out.childNodes[start].nodeName === "P") {
    const p = out.childNodes[start];
    p.replaceWith(...p.childNodes);
  }
  return out;
}

/** Replace the content of `node` with `text` rendered as markdown. */
export function render(node, text) {
  node.textContent = "";
  blocks(String(text).replace(/\r\n?/g, "\n").split("\n"), node, 0);
  return node;
}
