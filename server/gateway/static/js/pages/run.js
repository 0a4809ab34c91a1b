// One run: status and steps (live), each step's log streaming live in a virtualized view,
// level filter, search, download, artifacts, cancel and rerun-from-failure.

import { globalId, gql, mutate } from "../api.js";
import { h, replace, toast } from "../dom.js";
import { FINAL, bytes, date, runDuration, statusBadge } from "../format.js";
import { LogView } from "../logview.js";
import { navigate } from "../router.js";
import { can } from "../state.js";

const RUN_DETAIL = `id databaseId status statusHumanized statusMessage isFinal cause triggerKind
  createdAt startedAt finishedAt durationSeconds updatedAt gitBranch gitSha attempt cancelRequested
  job { id databaseId name } environment { name }
  steps { index name command status statusMessage startedAt finishedAt durationSeconds }
  artifacts { path size stepIndex }`;
const RUN = `query Run($id: ID!) { run(id: $id) { ${RUN_DETAIL} } }`;
const RUN_LIVE = `subscription RunLive($id: ID!) { runUpdated(runId: $id) { ${RUN_DETAIL} } }`;
const LOGS = `subscription RunLogs($id: ID!, $after: Int) {
  runLogs(runId: $id, after: $after) { cursor done lines { seq step ts level message } } }`;
const CANCEL = `mutation Cancel($id: ID!) { cancelRun(id: $id, reason: "Cancelled from the Kiln console") {
  run { ${RUN_DETAIL} } errors { code message field } } }`;
const RETRY = `mutation Retry($id: ID!) { retryRun(id: $id, cause: "Rerun from failure (Kiln console)") {
  run { id databaseId } errors { code message field } } }`;

const LEVELS = [
  ["0", "All levels"],
  ["1", "Info and above"],
  ["2", "Warnings and errors"],
  ["3", "Errors only"],
];

function facts(run) {
  const rows = [
    ["Job", h("a", { href: `/jobs/${run.job.databaseId}` }, run.job.name)],
    ["Environment", run.environment.name],
    ["Cause", run.cause],
    ["Trigger", run.triggerKind],
    ["Created", date(run.createdAt)],
    ["Started", run.startedAt ? date(run.startedAt) : "—"],
    ["Finished", run.finishedAt ? date(run.finishedAt) : "—"],
    ["Duration", h("span", { class: "run-duration" }, runDuration(run) || "—")],
    ["Git", run.gitSha ? `${run.gitBranch || ""} ${run.gitSha.slice(0, 10)}`.trim() : run.gitBranch || "—"],
    ["Attempt", String(run.attempt)],
  ];
  return [
    h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    run.statusMessage
      ? h("p", { class: `notice${run.status === "error" ? " error" : ""}`, id: "run-message" }, run.statusMessage)
      : null,
  ];
}

export async function render(main, params, scope) {
  const id = globalId("Run", params.id);
  const data = await gql(RUN, { id });
  if (scope.closed) return;
  let run = data.run;
  if (!run) {
    main.append(h("h1", {}, "Run not found"), h("p", {}, h("a", { href: "/runs" }, "All runs")));
    return;
  }

  const view = new LogView({ label: `Log of run ${run.databaseId}` });
  scope.add(() => view.destroy());
  const statusEl = h("span", { id: "run-status", "aria-live": "polite" });
  const factsEl = h("div");
  const actions = h("div", { class: "toolbar", id: "run-actions" });
  const stepsEl = h("ul", { class: "steps", "aria-label": "Steps" });
  const artifactsEl = h("ul", { class: "artifacts", id: "artifacts" });
  const logState = h("span", { class: "muted", id: "log-state", "aria-live": "polite" }, "Connecting…");
  const countEl = h("span", { class: "muted", id: "log-count" });
  let step = null;

  const levelSel = h("select", { id: "log-level", "aria-label": "Minimum level" },
    LEVELS.map(([v, t]) => h("option", { value: v, selected: v === "1" }, t)));
  const search = h("input", { id: "log-search", type: "search", placeholder: "Search the log", "aria-label": "Search the log" });
  view.setFilter({ minLevel: 1 });
  const updateCount = () => { countEl.textContent = `${view.shownCount.toLocaleString()} of ${view.lines.length.toLocaleString()} lines`; };
  levelSel.addEventListener("change", () => { view.setFilter({ minLevel: Number(levelSel.value) }); updateCount(); });
  let searchTimer = 0;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { view.setFilter({ text: search.value }); updateCount(); }, 120);
  });
  scope.add(() => clearTimeout(searchTimer));

  const drawSteps = () => {
    const item = (index, label, meta, status) => {
      const b = h("button", { type: "button", "aria-pressed": String(step === index), "data-step": index ?? "all" },
        h("span", { class: "stepname" }, label), status ? statusBadge(status) : h("span"),
        meta ? h("span", { class: "stepmeta" }, meta) : null);
      b.addEventListener("click", () => { step = index; view.setFilter({ step }); updateCount(); drawSteps(); });
      return h("li", {}, b);
    };
    replace(stepsEl,
      item(null, "All steps", `${run.steps.length} steps`, null),
      run.steps.map((s) => item(s.index, `${s.index}. ${s.name}`,
        [s.command, s.durationSeconds != null ? runDuration(s) : s.startedAt && !s.finishedAt ? "running" : ""].filter(Boolean).join(" · "),
        s.status)));
  };

  const drawArtifacts = () => {
    if (!run.artifacts.length) {
      replace(artifactsEl, h("li", { class: "muted" }, run.isFinal ? "No artifacts." : "Artifacts appear when a step ends."));
      return;
    }
    replace(artifactsEl, run.artifacts.map((a) =>
      h("li", {},
        h("a", { href: `/api/runs/${run.databaseId}/artifacts/${a.path.split("/").map(encodeURIComponent).join("/")}?step=${a.stepIndex}`,
                 download: a.path.split("/").pop(), title: `step ${a.stepIndex}` }, h("code", {}, a.path)),
        h("span", { class: "muted" }, bytes(a.size)))));
  };

  const drawActions = () => {
    const items = [];
    if (can("trigger_run") && !run.isFinal) {
      const b = h("button", { type: "button", class: "danger", id: "cancel-run", disabled: run.cancelRequested }, run.cancelRequested ? "Cancelling…" : "Cancel run");
      b.addEventListener("click", async () => {
        b.disabled = true;
        try { run = { ...run, ...(await mutate(CANCEL, { id: run.id })).run }; drawAll(); } catch (e) { toast(e.message, "error"); b.disabled = false; }
      });
      items.push(b);
    }
    if (can("trigger_run") && run.status === "error") {
      const b = h("button", { type: "button", id: "rerun" }, "Rerun from failure");
      b.addEventListener("click", async () => {
        b.disabled = true;
        try { navigate(`/runs/${(await mutate(RETRY, { id: run.id })).run.databaseId}`); } catch (e) { toast(e.message, "error"); b.disabled = false; }
      });
      items.push(b);
    }
    items.push(h("a", { class: "button", href: `/runs/${run.databaseId}/logs.txt`, download: `run-${run.databaseId}.log`, id: "download-log" }, "Download log"));
    replace(actions, items);
  };

  const drawAll = () => {
    replace(statusEl, statusBadge(run.status));
    replace(factsEl, facts(run));
    drawActions();
    drawSteps();
    drawArtifacts();
  };

  main.classList.add("wide");
  main.append(
    h("p", { class: "muted" }, h("a", { href: "/runs" }, "Runs"), " / ", h("a", { href: `/jobs/${run.job.databaseId}` }, run.job.name)),
    h("div", { class: "runhead" }, h("h1", {}, `Run #${run.databaseId}`), statusEl),
    factsEl,
    actions,
    h("div", { class: "runbody" },
      h("aside", {},
        h("h2", {}, "Steps"), stepsEl,
        h("h2", {}, "Artifacts"), artifactsEl),
      h("section", { "aria-labelledby": "log-title" },
        h("div", { class: "toolbar" }, h("h2", { id: "log-title" }, "Log"), logState, h("span", { class: "grow" }),
          levelSel, search, countEl),
        view.wrap)));
  drawAll();

  scope.subscribe({ query: RUN_LIVE, variables: { id } }, {
    next: (d) => {
      const fresh = d.runUpdated;
      if (run.updatedAt && fresh.updatedAt && fresh.updatedAt < run.updatedAt) return;
      run = fresh;
      drawAll();
    },
    error: () => {},
  });
  scope.interval(() => {
    if (run.isFinal || !run.startedAt) return;
    const el = factsEl.querySelector(".run-duration");
    if (el) el.textContent = runDuration(run);
  }, 1000);

  let cursor = 0;
  scope.subscribe({ query: LOGS, variables: () => ({ id, after: cursor }) }, {
    next: (d) => {
      const batch = d.runLogs;
      if (batch.lines.length) view.append(batch.lines);
      cursor = batch.cursor;
      updateCount();
      logState.textContent = batch.done ? "Complete" : FINAL.has(run.status) ? "Finishing…" : "Streaming live";
    },
    error: (errors) => { logState.textContent = `Log unavailable: ${errors[0].message}`; },
    complete: () => { logState.textContent = "Complete"; },
    reconnecting: () => { logState.textContent = "Reconnecting…"; },
  });
  updateCount();
}
