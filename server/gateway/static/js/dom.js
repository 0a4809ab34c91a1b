// Building DOM from elements and text nodes only (never parsed HTML strings).

const SVG_NS = "http://www.w3.org/2000/svg";

function add(el, child) {
  if (child == null || child === false) return;
  if (Array.isArray(child)) { for (const c of child) add(el, c); return; }
  el.append(child instanceof Node ? child : document.createTextNode(String(child)));
}

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "value" && "value" in el) {
      el.value = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  add(el, children);
  return el;
}

/** h("button", {class: "primary", onClick}, "Run now") */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** s("rect", {x: 1}) for SVG elements */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  add(el, children);
  return el;
}

/** A short message in the toast area (polite live region). */
export function toast(message, kind = "info", ms = 5000) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : null }, message);
  box.append(el);
  setTimeout(() => el.remove(), ms);
}
