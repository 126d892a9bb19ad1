// Inline SVG icons (24x24, stroked with the text colour): no emoji font needed anywhere.
const PATHS = {
  send: "M12 19V5M6 11l6-6 6 6",
  image: "M4 5h16v14H4zM4 16l5-5 4 4 3-3 4 4M15 9h.01",
  copy: "M9 9h11v11H9zM5 15H4V4h11v1",
  check: "M5 12l5 5 9-10",
  cross: "M6 6l12 12M18 6L6 18",
  tool: "M4 17l6-5-6-5M12 19h8",
  lock: "M6 11h12v9H6zM8 11V8a4 4 0 0 1 8 0v3",
  alert: "M12 3l10 18H2zM12 10v5M12 18v.01",
  file: "M6 3h8l4 4v14H6zM14 3v4h4",
  down: "M12 5v14M6 13l6 6 6-6",
};
const NS = "http://www.w3.org/2000/svg";

/** A fresh `<svg class="i">` for `name` (hidden from screen readers: label the button). */
export function icon(name) {
  const svg = document.createElementNS(NS, "svg");
  const path = document.createElementNS(NS, "path");
  for (const [k, v] of Object.entries({ class: "i", viewBox: "0 0 24 24", "aria-hidden": "true", focusable: "false" })) svg.setAttribute(k, v);
  path.setAttribute("d", PATHS[name]);
  svg.append(path);
  return svg;
}
