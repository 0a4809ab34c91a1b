// A live table of runs (runs page, job page): rows are upserted as runsUpdated events arrive.

import { h, replace } from "./dom.js";
import { ago, runDuration, statusBadge } from "./format.js";

export const RUN_FIELDS = `id databaseId status statusCode cause triggerKind createdAt startedAt finishedAt
  durationSeconds isFinal updatedAt job { id databaseId name }`;

export class RunTable {
  constructor({ showJob = true, label = "Runs", limit = 50 } = {}) {
    this.showJob = showJob;
    this.limit = limit;
    this.runs = new Map(); // databaseId -> run
    this.rows = new Map(); // databaseId -> <tr>
    this.body = h("tbody");
    this.empty = h("p", { class: "empty" }, "No runs yet.");
    this.el = h("div", {},
      h("table", { class: "data runs", "aria-label": label },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Run"),
          showJob ? h("th", { scope: "col" }, "Job") : null,
          h("th", { scope: "col" }, "Status"),
          h("th", { scope: "col" }, "Cause"),
          h("th", { scope: "col" }, "Created"),
          h("th", { scope: "col", class: "num" }, "Duration"))),
        this.body),
      this.empty);
  }

  set(runs) {
    this.runs.clear();
    for (const r of runs) this.runs.set(r.databaseId, r);
    this._redraw();
  }

  /** Older runs (the next page): the table grows to hold them. */
  addOlder(runs) {
    this.limit += runs.length;
    for (const r of runs) if (!this.runs.has(r.databaseId)) this.runs.set(r.databaseId, r);
    this._redraw();
  }

  upsert(run) {
    const old = this.runs.get(run.databaseId);
    if (old && old.updatedAt && run.updatedAt && old.updatedAt > run.updatedAt) return; // stale event
    this.runs.set(run.databaseId, { ...old, ...run });
    const tr = this.rows.get(run.databaseId);
    if (tr) {
      tr.replaceWith(this._row(this.runs.get(run.databaseId)));
      return;
    }
    this._redraw();
  }

  /** Refresh the durations of running runs (called every second). */
  tick() {
    const now = Date.now();
    for (const [id, run] of this.runs) {
      if (run.isFinal || !run.startedAt) continue;
      const cell = this.rows.get(id)?.querySelector(".duration");
      if (cell) cell.textContent = runDuration(run, now);
    }
  }

  _redraw() {
    const sorted = [...this.runs.values()].sort((a, b) => b.databaseId - a.databaseId).slice(0, this.limit);
    this.runs = new Map(sorted.map((r) => [r.databaseId, r]));
    this.rows.clear();
    replace(this.body, sorted.map((r) => this._row(r)));
    this.empty.hidden = sorted.length > 0;
  }

  _row(run) {
    const tr = h("tr", { "data-run": run.databaseId },
      h("td", {}, h("a", { href: `/runs/${run.databaseId}` }, `#${run.databaseId}`)),
      this.showJob ? h("td", {}, run.job ? h("a", { href: `/jobs/${run.job.databaseId}` }, run.job.name) : "") : null,
      h("td", {}, statusBadge(run.status)),
      h("td", {}, run.cause),
      h("td", { title: run.createdAt }, ago(run.createdAt)),
      h("td", { class: "num duration" }, runDuration(run)));
    this.rows.set(run.databaseId, tr);
    return tr;
  }
}
