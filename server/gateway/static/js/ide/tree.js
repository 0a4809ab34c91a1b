// The workspace's file tree (from fs.tree entries): folders expand, files open.
// Arrow Up/Down move between visible items, Right/Left open and close folders.

import { h, replace } from "../dom.js";

function nest(entries) {
  const root = { children: new Map() };
  for (const e of entries) {
    const parts = e.path.split("/");
    let node = root;
    parts.forEach((part, i) => {
      if (!node.children.has(part)) {
        node.children.set(part, { name: part, path: parts.slice(0, i + 1).join("/"), type: "dir", children: new Map() });
      }
      node = node.children.get(part);
    });
    node.type = e.type;
  }
  return root;
}

function sorted(node) {
  return [...node.children.values()].sort((a, b) =>
    a.type === b.type ? a.name.localeCompare(b.name) : a.type === "dir" ? -1 : 1);
}

export class FileTree {
  constructor({ onOpen }) {
    this.onOpen = onOpen;
    this.expanded = new Set(["models"]);
    this.current = null;
    this.root = { children: new Map() };
    this.el = h("ul", { class: "tree", "aria-label": "Files" });
    this.el.addEventListener("keydown", (ev) => this._key(ev));
  }

  set(entries) {
    this.root = nest(entries);
    this.draw();
  }

  select(path) {
    this.current = path;
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) this.expanded.add(parts.slice(0, i).join("/"));
    this.draw();
  }

  draw() {
    const focused = document.activeElement && this.el.contains(document.activeElement) ? document.activeElement.dataset.path : null;
    replace(this.el, this._items(this.root));
    if (focused) this.el.querySelector(`[data-path="${CSS.escape(focused)}"]`)?.focus();
  }

  _items(node) {
    return sorted(node).map((child) => {
      if (child.type === "dir") {
        const open = this.expanded.has(child.path);
        const b = h("button", { type: "button", class: "dir", "aria-expanded": String(open), "data-path": child.path }, child.name);
        b.addEventListener("click", () => { this._toggle(child.path); });
        return h("li", {}, b, open ? h("ul", { role: "group" }, this._items(child)) : null);
      }
      const b = h("button", { type: "button", class: "file", "data-path": child.path,
        "aria-current": child.path === this.current ? "true" : null }, child.name);
      b.addEventListener("click", () => this.onOpen(child.path));
      return h("li", {}, b);
    });
  }

  _toggle(path, open = !this.expanded.has(path)) {
    if (open) this.expanded.add(path); else this.expanded.delete(path);
    this.draw();
  }

  _key(ev) {
    const buttons = [...this.el.querySelectorAll("button")];
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    const b = buttons[i];
    if (ev.key === "ArrowDown") { ev.preventDefault(); buttons[Math.min(i + 1, buttons.length - 1)].focus(); }
    else if (ev.key === "ArrowUp") { ev.preventDefault(); buttons[Math.max(i - 1, 0)].focus(); }
    else if (ev.key === "ArrowRight" && b.classList.contains("dir") && b.getAttribute("aria-expanded") === "false") { ev.preventDefault(); this._toggle(b.dataset.path, true); }
    else if (ev.key === "ArrowLeft" && b.classList.contains("dir") && b.getAttribute("aria-expanded") === "true") { ev.preventDefault(); this._toggle(b.dataset.path, false); }
  }
}
