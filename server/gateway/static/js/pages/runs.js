// Runs of the current project, newest first, live.

import { gql } from "../api.js";
import { h, toast } from "../dom.js";
import { RUN_FIELDS, RunTable } from "../runtable.js";
import { state } from "../state.js";

const RUNS = `query Runs($project: ID, $after: String) {
  runs(first: 50, after: $after, filter: { projectId: $project }) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { ${RUN_FIELDS} } } }
}`;
const LIVE = `subscription RunsLive($project: ID) { runsUpdated(projectId: $project) { ${RUN_FIELDS} } }`;

export async function render(main, _params, scope) {
  const project = state.project ? state.project.id : null;
  const table = new RunTable({ label: "Runs" });
  const total = h("p", { class: "muted", "aria-live": "polite" });
  main.append(h("h1", {}, "Runs"), total, table.el);
  // subscribe first, then load: an event between the two is not lost
  const pending = [];
  let loaded = false;
  scope.subscribe({ query: LIVE, variables: { project } }, {
    next: (data) => { if (loaded) table.upsert(data.runsUpdated); else pending.push(data.runsUpdated); },
    error: (errors) => { total.textContent = `Live updates stopped: ${errors[0].message}`; },
  });
  const data = await gql(RUNS, { project });
  if (scope.closed) return;
  table.set(data.runs.edges.map((e) => e.node));
  loaded = true;
  for (const r of pending) table.upsert(r);
  total.textContent = `${data.runs.totalCount} runs${state.project ? ` in ${state.project.name}` : ""}`;
  let page = data.runs.pageInfo;
  const more = h("button", { type: "button", id: "older-runs", hidden: !page.hasNextPage }, "Older runs");
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      const next = await gql(RUNS, { project, after: page.endCursor });
      table.addOlder(next.runs.edges.map((e) => e.node));
      page = next.runs.pageInfo;
      more.hidden = !page.hasNextPage;
    } catch (err) {
      toast(err.message, "error");
    } finally {
      more.disabled = false;
    }
  });
  main.append(h("div", { class: "toolbar" }, more));
  scope.interval(() => table.tick(), 1000);
}
