// One job: its runs (live), "Run now", and its settings (editable with edit_jobs).

import { globalId, gql, mutate } from "../api.js";
import { describeCron } from "../cron.js";
import { h, replace, toast } from "../dom.js";
import { ago, date, duration } from "../format.js";
import { navigate } from "../router.js";
import { RUN_FIELDS, RunTable } from "../runtable.js";
import { can } from "../state.js";

const JOB_FIELDS = `id databaseId name description steps timeoutSeconds threads targetName generateDocs
  environment { id name } project { id name } schedule { cron timezone nextTickAt }`;
const JOB = `query Job($id: ID!) { job(id: $id) { ${JOB_FIELDS}
  runs(first: 25) { edges { node { ${RUN_FIELDS} } } } } }`;
const LIVE = `subscription JobRuns($job: ID) { runsUpdated(jobId: $job) { ${RUN_FIELDS} } }`;
const TRIGGER = `mutation Trigger($job: ID!) { triggerJobRun(jobId: $job, cause: "Triggered from the Kiln console") {
  run { id databaseId } errors { code message field } } }`;
const UPDATE = `mutation UpdateJob($id: ID!, $input: UpdateJobInput!) { updateJob(id: $id, input: $input) {
  job { ${JOB_FIELDS} } errors { code message field } } }`;

function settingsView(job) {
  return h("dl", { class: "facts", id: "job-settings" },
    h("dt", {}, "Environment"), h("dd", {}, job.environment.name),
    h("dt", {}, "Steps"), h("dd", {}, h("ol", {}, job.steps.map((s) => h("li", {}, h("code", {}, s))))),
    h("dt", {}, "Schedule"), h("dd", { title: job.schedule.cron || "" }, describeCron(job.schedule.cron, job.schedule.timezone),
      job.schedule.cron && job.schedule.nextTickAt ? h("span", { class: "muted" }, ` · next ${ago(job.schedule.nextTickAt)} (${date(job.schedule.nextTickAt)})`) : null),
    h("dt", {}, "Timeout"), h("dd", {}, job.timeoutSeconds ? duration(job.timeoutSeconds) : "none"));
}

function settingsForm(job, onSaved) {
  const err = h("p", { class: "error", role: "alert" });
  const name = h("input", { id: "job-name", value: job.name, required: true });
  const steps = h("textarea", { id: "job-steps", rows: Math.max(3, job.steps.length + 1) });
  steps.value = job.steps.join("\n");
  const cron = h("input", { id: "job-cron", value: job.schedule.cron || "", placeholder: "e.g. 0 6 * * 1-5", spellcheck: "false" });
  const tz = h("input", { id: "job-timezone", value: job.schedule.timezone || "UTC" });
  const cronText = h("span", { class: "hint", "aria-live": "polite" }, describeCron(job.schedule.cron, job.schedule.timezone));
  const update = () => { cronText.textContent = describeCron(cron.value.trim() || null, tz.value.trim()); };
  cron.addEventListener("input", update);
  tz.addEventListener("input", update);
  const timeout = h("input", { id: "job-timeout", type: "number", min: 0, step: 1, value: job.timeoutSeconds });
  const save = h("button", { type: "submit", class: "primary" }, "Save settings");
  const form = h("form", { class: "form", id: "job-settings-form", "aria-label": "Job settings" },
    h("label", { for: "job-name" }, "Name", name),
    h("label", { for: "job-steps" }, "Steps", h("span", { class: "hint" }, "One dbt command per line."), steps),
    h("label", { for: "job-cron" }, "Schedule (cron)", h("span", { class: "hint" }, "Empty: no schedule."), cron, cronText),
    h("label", { for: "job-timezone" }, "Timezone", tz),
    h("label", { for: "job-timeout" }, "Timeout (seconds)", h("span", { class: "hint" }, "0: no timeout."), timeout),
    h("div", { class: "toolbar" }, save), err);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    const stepList = steps.value.split("\n").map((s) => s.trim()).filter(Boolean);
    if (!stepList.length) { err.textContent = "A job needs at least one step."; steps.focus(); return; }
    const input = {
      name: name.value.trim(),
      steps: stepList,
      timeoutSeconds: Number(timeout.value || 0),
    };
    const newCron = cron.value.trim() || null;
    const newTz = tz.value.trim() || "UTC";
    if (newCron !== (job.schedule.cron || null) || newTz !== job.schedule.timezone) {
      input.schedule = { cron: newCron, timezone: newTz };
    }
    save.disabled = true;
    try {
      const payload = await mutate(UPDATE, { id: job.id, input });
      toast("Job settings saved.");
      onSaved(payload.job);
    } catch (e) {
      err.textContent = e.field ? `${e.field}: ${e.message}` : e.message;
    } finally {
      save.disabled = false;
    }
  });
  return form;
}

export async function render(main, params, scope) {
  const id = globalId("Job", params.id);
  const table = new RunTable({ showJob: false, label: "Runs of this job", limit: 25 });
  let loaded = false;
  const pending = [];
  scope.subscribe({ query: LIVE, variables: { job: id } }, {
    next: (d) => (loaded ? table.upsert(d.runsUpdated) : pending.push(d.runsUpdated)),
    error: () => {},
  });
  const data = await gql(JOB, { id });
  if (scope.closed) return;
  let job = data.job;
  if (!job) {
    main.append(h("h1", {}, "Job not found"), h("p", {}, h("a", { href: "/jobs" }, "All jobs")));
    return;
  }
  const title = h("h1", {}, job.name);
  const actions = h("div", { class: "toolbar" });
  if (can("trigger_run")) {
    const runNow = h("button", { type: "button", class: "primary", id: "run-now" }, "Run now");
    runNow.addEventListener("click", async () => {
      runNow.disabled = true;
      try {
        const payload = await mutate(TRIGGER, { job: job.id });
        navigate(`/runs/${payload.run.databaseId}`);
      } catch (e) {
        toast(e.message, "error");
        runNow.disabled = false;
      }
    });
    actions.append(runNow);
  }
  const settings = h("section", { "aria-labelledby": "settings-title" });
  const drawSettings = () => {
    replace(settings, h("h2", { id: "settings-title" }, "Settings"), settingsView(job));
    if (can("edit_jobs")) {
      const edit = h("button", { type: "button", id: "edit-job" }, "Edit settings");
      edit.addEventListener("click", () => {
        const form = settingsForm(job, (saved) => { job = { ...job, ...saved }; title.textContent = job.name; drawSettings(); });
        const cancel = h("button", { type: "button" }, "Cancel");
        cancel.addEventListener("click", drawSettings);
        form.querySelector(".toolbar").append(cancel);
        replace(settings, h("h2", { id: "settings-title" }, "Edit settings"), form);
        form.querySelector("input").focus();
      });
      settings.append(edit);
    }
  };
  drawSettings();
  main.append(
    h("p", { class: "muted" }, h("a", { href: "/jobs" }, "Jobs"), " / ", job.project.name),
    title, actions,
    h("section", { "aria-labelledby": "runs-title" }, h("h2", { id: "runs-title" }, "Runs"), table.el),
    settings);
  table.set(job.runs.edges.map((e) => e.node));
  loaded = true;
  for (const r of pending) table.upsert(r);
  scope.interval(() => table.tick(), 1000);
}
