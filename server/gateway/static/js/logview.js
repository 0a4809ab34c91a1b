// A virtualized log view: only the rows in sight (plus a margin) exist in the DOM, so
// 100,000 lines scroll as smoothly as 100. Rows have one fixed height (CSS --line).
//
// Lines are objects { seq, step, ts, level, message }. A filter (step, minimum
// level, search text) picks which lines are shown; new lines are filtered as
// they arrive. While the view is scrolled to the bottom it follows the tail.

import { h } from "./dom.js";
import { time } from "./format.js";

const LEVELS = { debug: 0, info: 1, warn: 2, warning: 2, error: 3 };
const OVERSCAN = 20;

export function levelRank(level) {
  return LEVELS[level] ?? 1;
}

export class LogView {
  constructor({ label = "Log", empty = "No log lines yet.", short = false } = {}) {
    this.lines = [];
    this.shown = []; // indexes into lines
    this.filter = { step: null, minLevel: 0, text: "" };
    this.follow = true;
    this.lineHeight = 18;
    this.frame = 0;
    this.rendered = { first: -1, last: -1, key: "" };
    this.rowsEl = h("div", { class: "logview-rows", role: "presentation" });
    this.spacer = h("div", { class: "logview-spacer", role: "presentation" }, this.rowsEl);
    this.emptyEl = h("div", { class: "logview-empty" }, empty);
    this.el = h("div", {
      class: `logview${short ? " short" : ""}`, role: "log", tabindex: "0", "aria-label": label,
      "aria-live": "off", "data-count": "0",
    }, this.spacer, this.emptyEl);
    this.jumpBtn = h("button", { type: "button", class: "jump small", hidden: true }, "Follow new lines ↓");
    this.jumpBtn.addEventListener("click", () => { this.follow = true; this._toBottom(); this.jumpBtn.hidden = true; });
    this.wrap = h("div", { class: "logwrap" }, this.el, this.jumpBtn);
    this.el.addEventListener("scroll", () => this._onScroll(), { passive: true });
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(this.el);
  }

  destroy() {
    this.resize.disconnect();
    cancelAnimationFrame(this.frame);
  }

  clear() {
    this.lines = [];
    this.shown = [];
    this._sizeChanged();
  }

  /** Append lines (in order). */
  append(lines) {
    if (!lines.length) return;
    const start = this.lines.length;
    for (const line of lines) {
      const message = line.message == null ? "" : String(line.message);
      if (!message.includes("\n")) { this.lines.push(message === line.message ? line : { ...line, message }); continue; }
      // one row per physical line (rows have a fixed height); the seq stays the line's
      message.replace(/\r?\n$/, "").split(/\r?\n/).forEach((part, i) => {
        this.lines.push({ ...line, message: part, ts: i ? null : line.ts });
      });
    }
    for (let i = start; i < this.lines.length; i++) if (this._match(this.lines[i])) this.shown.push(i);
    this._sizeChanged();
  }

  setFilter(patch) {
    Object.assign(this.filter, patch);
    this._needle = this.filter.text ? this.filter.text.toLowerCase() : "";
    this.shown = [];
    for (let i = 0; i < this.lines.length; i++) if (this._match(this.lines[i])) this.shown.push(i);
    this.rendered.key = "";
    this._sizeChanged();
  }

  get shownCount() {
    return this.shown.length;
  }

  _match(line) {
    const f = this.filter;
    if (f.step != null && line.step !== f.step) return false;
    if (f.minLevel && levelRank(line.level) < f.minLevel) return false;
    if (this._needle && !line.message.toLowerCase().includes(this._needle)) return false;
    return true;
  }

  _sizeChanged() {
    this.spacer.style.height = `${this.shown.length * this.lineHeight}px`;
    this.emptyEl.hidden = this.shown.length > 0;
    this.el.dataset.count = String(this.shown.length);
    if (this.follow) this._toBottom();
    this.schedule();
  }

  _toBottom() {
    this.el.scrollTop = this.el.scrollHeight;
  }

  _onScroll() {
    const atBottom = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - this.lineHeight;
    this.follow = atBottom;
    this.jumpBtn.hidden = atBottom;
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  render() {
    const view = this.el.clientHeight || 400;
    const lh = this.lineHeight;
    const first = Math.max(0, Math.floor(this.el.scrollTop / lh) - OVERSCAN);
    const last = Math.min(this.shown.length, Math.ceil((this.el.scrollTop + view) / lh) + OVERSCAN);
    const key = `${this.shown.length}|${this.filter.text}`;
    const r = this.rendered;
    if (r.first === first && r.last === last && r.key === key) return;
    this.rendered = { first, last, key };
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) frag.append(this._row(this.lines[this.shown[i]]));
    this.rowsEl.replaceChildren(frag);
    this.rowsEl.style.transform = `translateY(${first * lh}px)`;
  }

  _row(line) {
    const level = (line.level || "info").toLowerCase();
    const row = h("div", { class: `logline ${level}`, "data-seq": line.seq },
      h("span", { class: "ts" }, line.ts ? time(line.ts) : ""),
      h("span", { class: "lvl" }, level === "warning" ? "warn" : level.slice(0, 5)));
    const msg = h("span", { class: "msg" });
    const needle = this._needle;
    if (needle) {
      const text = line.message;
      const lower = text.toLowerCase();
      let at = 0;
      for (let i = lower.indexOf(needle); i !== -1; i = lower.indexOf(needle, at)) {
        msg.append(text.slice(at, i), h("mark", {}, text.slice(i, i + needle.length)));
        at = i + needle.length;
      }
      msg.append(text.slice(at));
    } else {
      msg.textContent = line.message;
    }
    row.append(msg);
    return row;
  }
}
