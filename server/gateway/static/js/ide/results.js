// Preview results as a table.

import { h } from "../dom.js";

function cell(v) {
  if (v == null) return h("td", { class: "muted" }, "null");
  return h("td", {}, typeof v === "object" ? JSON.stringify(v) : String(v));
}

export function resultsTable(res) {
  return h("div", {},
    h("p", { class: "muted", id: "preview-summary" }, `${res.rowCount} row${res.rowCount === 1 ? "" : "s"} (limit ${res.limit})`),
    h("table", { class: "results", id: "preview-results", "aria-label": "Preview results" },
      h("thead", {}, h("tr", {}, res.columns.map((c, i) => h("th", { scope: "col", title: res.types ? res.types[i] : null }, c)))),
      h("tbody", {}, res.rows.map((row) => h("tr", {}, row.map(cell))))));
}
