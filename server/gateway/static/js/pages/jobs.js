// Jobs of the current project: schedule in words, last run (live), next run.

import { gql } from "../api.js";
import { describeCron } from "../cron.js";
import { h, replace } from "../dom.js";
import { ago, date, statusBadge } from "../format.js";
import { state } from "../state.js";

const LAST_RUN = "id databaseId status createdAt finishedAt updatedAt";
const JOBS = `query Jobs($project: ID) {
  jobs(first: 200, filter: { projectId: $project }) { edges { node {
    id databaseId name environment { name } steps
    schedule { cron timezone nextTickAt }
    lastRun { ${LAST_RUN} }
  } } }
}`;
const LIVE = `subscription JobsLive($project: ID) { runsUpdated(projectId: $project) { ${LAST_RUN} job { id } } }`;

function lastRunCell(run) {
  if (!run) return h("span", { class: "muted" }, "never run");
  return h("span", {}, h("a", { href: `/runs/${run.databaseId}`, "aria-label": `Run ${run.databaseId}` }, statusBadge(run.status)),
    " ", h("span", { class: "muted", title: run.createdAt }, ago(run.finishedAt || run.createdAt)));
}

export async function render(main, _params, scope) {
  const project = state.project ? state.project.id : null;
  main.append(h("h1", {}, "Jobs"));
  const cells = new Map(); // job id -> { cell, run }
  let loaded = false;
  const pending = [];
  const apply = (run) => {
    const entry = cells.get(run.job.id);
    if (!entry) return;
    if (entry.run && entry.run.databaseId > run.databaseId) return;
    if (entry.run && entry.run.databaseId === run.databaseId && entry.run.updatedAt > run.updatedAt) return;
    entry.run = run;
    replace(entry.cell, lastRunCell(run));
  };
  scope.subscribe({ query: LIVE, variables: { project } }, {
    next: (data) => (loaded ? apply(data.runsUpdated) : pending.push(data.runsUpdated)),
    error: () => {},
  });
  const data = await gql(JOBS, { project });
  if (scope.closed) return;
  const jobs = data.jobs.edges.map((e) => e.node);
  if (!jobs.length) {
    main.append(h("p", { class: "empty" }, state.project ? `No jobs in ${state.project.name} yet.` : "No projects yet."));
    return;
  }
  const rows = jobs.map((job) => {
    const cell = h("td", { class: "last-run" }, lastRunCell(job.lastRun));
    cells.set(job.id, { cell, run: job.lastRun });
    const next = job.schedule.cron && job.schedule.nextTickAt;
    return h("tr", { "data-job": job.databaseId },
      h("td", {}, h("a", { href: `/jobs/${job.databaseId}` }, job.name)),
      h("td", {}, job.environment.name),
      h("td", { title: job.schedule.cron || "" }, describeCron(job.schedule.cron, job.schedule.timezone)),
      cell,
      h("td", { title: next ? date(next) : "" }, next ? ago(next) : h("span", { class: "muted" }, "—")));
  });
  main.append(h("table", { class: "data jobs", "aria-label": "Jobs" },
    h("thead", {}, h("tr", {},
      ["Job", "Environment", "Schedule", "Last run", "Next run"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows)));
  loaded = true;
  for (const r of pending) apply(r);
}
