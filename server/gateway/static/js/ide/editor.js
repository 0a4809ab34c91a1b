// The code editor: a textarea with line numbers, tab/shift-tab indentation, auto-indent,
// Ctrl/Cmd-S to save and Ctrl/Cmd-Enter to preview, and tabs for the open files.
// Esc then Tab leaves the editor (Tab is otherwise indentation, not a keyboard trap).

import { h, replace } from "../dom.js";

const INDENT = "    ";

function insert(textarea, text) {
  textarea.focus();
  // execCommand keeps the browser's undo history; setRangeText is the fallback
  if (!document.execCommand || !document.execCommand("insertText", false, text)) {
    textarea.setRangeText(text, textarea.selectionStart, textarea.selectionEnd, "end");
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  }
}

export class Editor {
  constructor({ onSave = () => {}, onRun = () => {}, onActivate = () => {} } = {}) {
    this.docs = new Map(); // path -> { path, content, saved, version, scroll, sel }
    this.active = null;
    this.onSave = onSave;
    this.onRun = onRun;
    this.onActivate = onActivate;
    this.escaped = false;
    this.tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Open files" });
    this.gutter = h("pre", { class: "gutter", "aria-hidden": "true" }, "1");
    this.textarea = h("textarea", {
      class: "code", id: "editor", spellcheck: "false", autocapitalize: "off", autocomplete: "off",
      wrap: "off", "aria-label": "Editor", "aria-describedby": "editor-help",
    });
    this.help = h("span", { id: "editor-help", class: "sr-only" },
      "Tab indents. Press Escape, then Tab, to leave the editor. Control S saves, Control Enter previews.");
    this.empty = h("div", { class: "editor-empty" }, "Open a file from the tree.");
    this.body = h("div", { class: "editor", hidden: true }, this.gutter, this.textarea);
    this.el = h("div", { class: "editor-wrap" }, this.tabs, this.body, this.empty, this.help);
    this.lineCount = 1;
    this.textarea.addEventListener("input", () => this._changed());
    this.textarea.addEventListener("scroll", () => { this.gutter.scrollTop = this.textarea.scrollTop; });
    this.textarea.addEventListener("keydown", (ev) => this._key(ev));
  }

  get doc() {
    return this.active ? this.docs.get(this.active) : null;
  }

  isDirty(path = this.active) {
    const d = this.docs.get(path);
    return !!d && d.content !== d.saved;
  }

  open(path, content, version) {
    if (!this.docs.has(path)) this.docs.set(path, { path, content, saved: content, version, scroll: 0, sel: 0 });
    this.activate(path);
  }

  activate(path) {
    const cur = this.doc;
    if (cur) { cur.scroll = this.textarea.scrollTop; cur.sel = this.textarea.selectionStart; }
    this.active = path;
    const d = this.doc;
    this.body.hidden = !d;
    this.empty.hidden = !!d;
    if (d) {
      this.textarea.value = d.content;
      this.textarea.setSelectionRange(d.sel, d.sel);
      this.textarea.scrollTop = d.scroll;
      this.textarea.setAttribute("aria-label", `Editor: ${path}`);
      this._lines(true);
    }
    this._drawTabs();
    this.onActivate(d);
  }

  close(path) {
    if (this.isDirty(path) && !confirm(`${path} has unsaved changes. Close it anyway?`)) return;
    const keys = [...this.docs.keys()];
    const at = keys.indexOf(path);
    this.docs.delete(path);
    if (this.active === path) {
      const next = keys[at + 1] || keys[at - 1] || null;
      this.active = null;
      this.activate(next && this.docs.has(next) ? next : null);
    } else {
      this._drawTabs();
    }
  }

  markSaved(path, version, content) {
    const d = this.docs.get(path);
    if (!d) return;
    d.version = version;
    d.saved = content;
    this._drawTabs();
  }

  /** Replace a document's text (e.g. after formatting), keeping it the active one. */
  setContent(path, content, version) {
    const d = this.docs.get(path);
    if (!d) return;
    d.content = content;
    d.saved = content;
    d.version = version;
    if (path === this.active) { this.textarea.value = content; this._lines(true); }
    this._drawTabs();
  }

  focus() {
    this.textarea.focus();
  }

  _changed() {
    const d = this.doc;
    if (!d) return;
    const wasDirty = d.content !== d.saved;
    d.content = this.textarea.value;
    this._lines();
    if (wasDirty !== (d.content !== d.saved)) this._drawTabs();
  }

  _lines(force = false) {
    const n = this.textarea.value.split("\n").length;
    if (!force && n === this.lineCount) return;
    this.lineCount = n;
    let text = "";
    for (let i = 1; i <= n; i++) text += i + "\n";
    this.gutter.textContent = text;
    this.gutter.scrollTop = this.textarea.scrollTop;
  }

  _key(ev) {
    const ta = this.textarea;
    const mod = ev.ctrlKey || ev.metaKey;
    if (mod && (ev.key === "s" || ev.key === "S")) { ev.preventDefault(); this.onSave(this.doc); return; }
    if (mod && ev.key === "Enter") { ev.preventDefault(); this.onRun(this.doc); return; }
    if (ev.key === "Escape") { this.escaped = true; return; }
    if (ev.key === "Tab" && !mod && !ev.altKey) {
      if (this.escaped) { this.escaped = false; return; } // let focus move on
      ev.preventDefault();
      const { selectionStart: a, selectionEnd: b, value } = ta;
      const multi = value.slice(a, b).includes("\n");
      if (!multi && !ev.shiftKey) { insert(ta, INDENT); return; }
      const lineStart = value.lastIndexOf("\n", a - 1) + 1;
      const block = value.slice(lineStart, b);
      const lines = block.split("\n");
      const changed = ev.shiftKey
        ? lines.map((l) => l.replace(new RegExp(`^( {1,${INDENT.length}}|\\t)`), ""))
        : lines.map((l) => INDENT + l);
      ta.setSelectionRange(lineStart, b);
      insert(ta, changed.join("\n"));
      ta.setSelectionRange(lineStart, lineStart + changed.join("\n").length);
      return;
    }
    this.escaped = false;
    if (ev.key === "Enter" && !mod && !ev.shiftKey && !ev.altKey) {
      const { selectionStart: a, value } = ta;
      const lineStart = value.lastIndexOf("\n", a - 1) + 1;
      const indent = /^[ \t]*/.exec(value.slice(lineStart, a))[0];
      if (indent) { ev.preventDefault(); insert(ta, "\n" + indent); }
    }
  }

  _drawTabs() {
    const tabs = [...this.docs.values()].map((d) => {
      const name = d.path.split("/").pop();
      const selected = d.path === this.active;
      const pick = h("button", { type: "button", role: "tab", "aria-selected": String(selected), title: d.path,
        tabindex: selected ? "0" : "-1", "data-path": d.path }, h("span", { class: "name" }, name));
      pick.addEventListener("click", () => { this.activate(d.path); this.focus(); });
      pick.addEventListener("keydown", (ev) => {
        if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
        const keys = [...this.docs.keys()];
        const i = keys.indexOf(d.path) + (ev.key === "ArrowRight" ? 1 : -1);
        const next = keys[(i + keys.length) % keys.length];
        this.activate(next);
        this.tabs.querySelector(`[data-path="${CSS.escape(next)}"]`)?.focus();
      });
      const close = h("button", { type: "button", class: "close", "aria-label": `Close ${name}`, title: "Close" }, "×");
      close.addEventListener("click", () => this.close(d.path));
      return h("div", { class: `tab${selected ? " active" : ""}${d.content !== d.saved ? " dirty" : ""}` }, pick, close);
    });
    replace(this.tabs, tabs);
  }
}
