// The browser IDE: start or resume your session (pending → ready, live), then a workbench
// over the develop server's JSON-RPC: file tree, editor with tabs, compile, preview, dbt
// command bar, git panel and the current model's lineage.

import { gql, mutate } from "../api.js";
import { h, replace, toast } from "../dom.js";
import { CommandBar } from "../ide/commandbar.js";
import { Editor } from "../ide/editor.js";
import { GitPanel } from "../ide/gitpanel.js";
import { lineageGraph } from "../ide/lineage.js";
import { resultsTable } from "../ide/results.js";
import { Rpc } from "../ide/rpc.js";
import { FileTree } from "../ide/tree.js";
import { can, state } from "../state.js";

const SESSION = "id databaseId state failureReason startedAt";
const BY_PROJECT = `query IdeSession($project: ID) { ideSession(projectId: $project) { ${SESSION} } }`;
const BY_ID = `query IdeSessionById($id: ID) { ideSession(id: $id) { ${SESSION} } }`;
const START = `mutation StartIde($project: ID!) { startIdeSession(projectId: $project) {
  session { ${SESSION} } errors { code message field } } }`;
const STOP = `mutation StopIde($id: ID!) { stopIdeSession(id: $id) { session { ${SESSION} } errors { code message field } } }`;
const LIVE = `subscription IdeLive($id: ID!) { ideSessionUpdated(sessionId: $id) { ${SESSION} } }`;
const LIMITS = [10, 100, 500, 1000, 5000];
const STATES = {
  pending: "Starting your develop server…",
  ready: "Ready",
  stopping: "Stopping…",
  stopped: "Stopped",
  failed: "Failed to start",
};

function panelTabs(names, onPick) {
  const buttons = names.map(([key, label]) => {
    const b = h("button", { type: "button", role: "tab", id: `tab-${key}`, "aria-controls": `panel-${key}`, "aria-selected": "false" }, label);
    b.addEventListener("click", () => onPick(key));
    return b;
  });
  return h("div", { class: "panel-tabs", role: "tablist", "aria-label": "Output" }, buttons);
}

function workbench(main, rpc, scope, info) {
  const projectDir = info.projectSubdir ? `${info.projectSubdir}/` : "";
  const status = h("span", { class: "muted", id: "editor-status", "aria-live": "polite" });
  const git = new GitPanel(rpc);
  const lineage = h("div", { class: "lineage", id: "lineage" }, h("p", { class: "muted" }, "Open a model to see its lineage."));
  const compiled = h("pre", { id: "compiled-sql" }, "Compile a model to see its SQL.");
  const results = h("div", { id: "preview" }, h("p", { class: "muted" }, "Preview a model to see rows."));
  let lineageFor = null;
  let tree = null;

  const openFile = async (path) => {
    try {
      if (!editor.docs.has(path)) {
        const res = await rpc.call("fs.read", { path });
        editor.open(path, res.content, res.version);
      } else {
        editor.activate(path);
      }
      editor.focus();
    } catch (err) {
      toast(`Cannot open ${path}: ${err.message}`, "error");
    }
  };

  const modelName = (path) => {
    if (!path || !path.endsWith(".sql") || !path.startsWith(projectDir)) return null;
    const inner = path.slice(projectDir.length);
    if (!/^(models|snapshots|seeds)\//.test(inner)) return null;
    return inner.split("/").pop().replace(/\.sql$/, "");
  };

  const showLineage = async (doc) => {
    const name = modelName(doc && doc.path);
    if (name === lineageFor) return;
    lineageFor = name;
    if (!name) { replace(lineage, h("p", { class: "muted" }, "Open a model to see its lineage.")); return; }
    replace(lineage, h("p", { class: "muted" }, "Loading lineage…"));
    try {
      const graph = await rpc.call("dbt.lineage", { select: `+${name}+` });
      if (lineageFor !== name) return;
      const current = graph.nodes.find((n) => n.path && `${projectDir}${n.path}` === doc.path);
      replace(lineage, lineageGraph(graph, {
        current: current ? current.id : null,
        onOpen: (n) => openFile(`${projectDir}${n.path}`),
      }));
    } catch (err) {
      if (lineageFor === name) replace(lineage, h("p", { class: "error" }, err.message));
    }
  };

  const save = async (doc) => {
    if (!doc) return;
    const content = doc.content;
    status.textContent = "Saving…";
    try {
      const res = await rpc.call("fs.write", { path: doc.path, content, version: doc.version });
      editor.markSaved(doc.path, res.version, content);
      status.textContent = `Saved ${doc.path}`;
      lineageFor = null;
      showLineage(editor.doc);
      git.refresh();
    } catch (err) {
      status.textContent = `Save failed: ${err.message}`;
      toast(`Save failed: ${err.message}`, "error");
    }
  };

  const editor = new Editor({
    onSave: save,
    onRun: () => preview(),
    onActivate: (doc) => { if (doc && tree) tree.select(doc.path); showLineage(doc); },
  });

  let pick = () => {};
  const compile = async () => {
    const doc = editor.doc;
    if (!doc) return;
    status.textContent = "Compiling…";
    compiled.textContent = "Compiling…";
    pick("compiled");
    try {
      const params = editor.isDirty() ? { sql: doc.content } : { path: doc.path };
      const res = await rpc.call("dbt.compile", params);
      compiled.textContent = res.compiledSql;
      status.textContent = "Compiled";
    } catch (err) {
      compiled.textContent = err.message;
      status.textContent = "Compile failed";
    }
  };

  const limit = h("select", { id: "preview-limit", "aria-label": "Row limit" },
    LIMITS.map((n) => h("option", { value: n, selected: n === 100 }, `${n} rows`)));
  const preview = async () => {
    const doc = editor.doc;
    if (!doc) return;
    status.textContent = "Running preview…";
    replace(results, h("p", { class: "muted" }, "Running preview…"));
    pick("results");
    try {
      const res = await rpc.call("dbt.preview", { sql: doc.content, limit: Number(limit.value) });
      replace(results, resultsTable(res));
      status.textContent = `Preview: ${res.rowCount} rows`;
    } catch (err) {
      replace(results, h("p", { class: "error", role: "alert" }, err.message));
      status.textContent = "Preview failed";
    }
  };

  const command = new CommandBar(rpc, { onFinished: () => { git.refresh(); lineageFor = null; showLineage(editor.doc); } });
  scope.add(() => command.destroy());

  const button = (label, id, fn, title) => {
    const b = h("button", { type: "button", id, title }, label);
    b.addEventListener("click", () => fn(editor.doc));
    return b;
  };
  const panels = {
    results: h("div", { class: "panel-body", id: "panel-results", role: "tabpanel", "aria-labelledby": "tab-results" }, results),
    compiled: h("div", { class: "panel-body", id: "panel-compiled", role: "tabpanel", "aria-labelledby": "tab-compiled" }, compiled),
    command: h("div", { class: "panel-body", id: "panel-command", role: "tabpanel", "aria-labelledby": "tab-command" }, command.el),
  };
  const tabs = panelTabs([["command", "dbt command"], ["results", "Preview"], ["compiled", "Compiled SQL"]], (k) => pick(k));
  pick = (key) => {
    for (const [k, p] of Object.entries(panels)) p.hidden = k !== key;
    for (const b of tabs.querySelectorAll("button")) b.setAttribute("aria-selected", String(b.id === `tab-${key}`));
  };
  pick("command");
  command.input.addEventListener("focus", () => pick("command"));

  tree = new FileTree({ onOpen: openFile });
  const refreshTree = async () => {
    try {
      const res = await rpc.call("fs.tree", {});
      tree.set(res.entries);
    } catch (err) {
      toast(`File tree: ${err.message}`, "error");
    }
  };

  main.append(
    h("nav", { class: "ide-tree", "aria-label": "Files" },
      h("div", { class: "toolbar tree-bar" }, h("h2", {}, "Files"), button("Refresh", "tree-refresh", refreshTree)),
      tree.el),
    h("section", { class: "ide-center", "aria-label": "Editor" },
      editor.el,
      h("div", { class: "editor-bar" },
        button("Save", "save", save, "Ctrl/Cmd-S"),
        button("Compile", "compile", compile),
        button("Preview", "preview-run", preview, "Ctrl/Cmd-Enter"),
        limit, status)),
    h("aside", { class: "ide-side", "aria-label": "Git and lineage" },
      git.el,
      h("section", { class: "side-section", "aria-labelledby": "lineage-title" },
        h("h2", { id: "lineage-title" }, "Lineage"), lineage)),
    h("section", { class: "ide-bottom", "aria-label": "Output" }, tabs, ...Object.values(panels)));

  refreshTree();
  git.refresh();
  return { editor };
}

export async function render(main, _params, scope) {
  main.classList.add("wide");
  if (!can("develop")) {
    main.append(h("h1", {}, "IDE"), h("p", { class: "notice" }, "Your role may not develop in this account."));
    return;
  }
  if (!state.project) {
    main.append(h("h1", {}, "IDE"), h("p", { class: "notice" }, "Pick a project first."));
    return;
  }
  const project = state.project;
  const layout = h("div", { class: "ide" });
  const stateEl = h("span", { id: "ide-state", role: "status" });
  const controls = h("span", { class: "toolbar" });
  const head = h("div", { class: "ide-head" }, h("h1", {}, `IDE · ${project.name}`), h("span", { class: "state-line" }, stateEl, controls));
  const start = h("div", { class: "ide-start" });
  main.append(head, start);

  let session = null;
  let rpc = null;
  let watching = null;
  let stopping = false;

  const connect = async () => {
    if (rpc || scope.closed) return;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ide/${session.databaseId}/ws`;
    rpc = new Rpc(url);
    stateEl.textContent = "Connecting…";
    try {
      await rpc.connect();
    } catch (err) {
      rpc = null;
      stateEl.textContent = `Cannot reach your develop server: ${err.message}`;
      return;
    }
    if (scope.closed) { rpc.close(); return; }
    scope.add(() => rpc && rpc.close());
    rpc.onClose(() => {
      rpc = null;
      if (scope.closed) return;
      if (!stopping) {
        stateEl.textContent = "Disconnected from the develop server.";
        const again = h("button", { type: "button", id: "ide-reconnect" }, "Reconnect");
        again.addEventListener("click", () => {
          layout.remove();
          replace(layout);
          refresh().catch((err) => toast(err.message, "error"));
        });
        replace(controls, again);
      }
    });
    let info;
    try {
      info = await rpc.call("session.info");
    } catch (err) {
      stateEl.textContent = `The develop server does not answer: ${err.message}`;
      return;
    }
    if (scope.closed) return;
    start.hidden = true;
    replace(layout);
    main.append(layout);
    workbench(layout, rpc, scope, info);
    stateEl.textContent = `Ready · ${info.branch || "no branch"} · dbt ${info.dbtVersion || "?"}`;
    stateEl.dataset.state = "ready";
    const stop = h("button", { type: "button", id: "ide-stop" }, "Stop session");
    stop.addEventListener("click", async () => {
      stopping = true;
      stop.disabled = true;
      try {
        if (rpc) { rpc.close(); rpc = null; }
        layout.remove();
        const res = await mutate(STOP, { id: session.id });
        show(res.session);
      } catch (err) {
        toast(err.message, "error");
        stop.disabled = false;
      } finally {
        stopping = false;
      }
    });
    replace(controls, stop);
  };

  const watch = () => {
    if (!session || watching === session.id) return;
    watching = session.id;
    scope.subscribe({ query: LIVE, variables: { id: session.id } }, {
      next: (d) => show(d.ideSessionUpdated),
      error: (errors) => toast(`Live session updates stopped: ${errors[0].message}`, "error"),
    });
  };

  const startSession = async (button) => {
    if (button) button.disabled = true;
    try {
      const res = await mutate(START, { project: project.id });
      show(res.session);
      watch();
      // the session may have become ready before the subscription was in place
      const now = (await gql(BY_ID, { id: res.session.id })).ideSession;
      if (now) show(now);
    } catch (err) {
      toast(err.message, "error");
      if (button) button.disabled = false;
    }
  };

  function show(s) {
    if (scope.closed) return;
    session = s;
    const st = s ? s.state : "none";
    stateEl.dataset.state = st;
    if (st === "ready") { connect(); return; }
    if (rpc) { // stopped elsewhere (another tab, the idle culler): the workbench goes
      const old = rpc;
      rpc = null;
      old.close();
    }
    layout.remove();
    stateEl.textContent = s ? STATES[st] || st : "No session yet";
    const startBtn = h("button", { type: "button", class: "primary", id: "ide-start" }, s && s.state !== "stopped" ? "Start again" : "Start IDE session");
    startBtn.addEventListener("click", () => startSession(startBtn));
    if (st === "pending" || st === "stopping") {
      replace(start, h("p", {}, STATES[st]), h("p", { class: "muted" }, "This page follows the session live; it opens the workbench when the server is ready."));
      replace(controls);
      start.hidden = false;
      return;
    }
    replace(start,
      h("h2", {}, st === "failed" ? "Your develop server failed to start" : "Develop in the browser"),
      st === "failed" && s.failureReason ? h("p", { class: "notice error" }, s.failureReason) : null,
      h("p", {}, `Start your own develop server for ${project.name}: your workspace, your development target. Files you left are kept between sessions.`),
      startBtn);
    replace(controls);
    start.hidden = false;
  }

  const refresh = async () => {
    const s = (await gql(BY_PROJECT, { project: project.id })).ideSession;
    show(s);
    if (s && (s.state === "pending" || s.state === "stopping")) watch();
  };
  await refresh();
  // a last resort if a live event is missed while the server starts
  scope.interval(async () => {
    if (session && (session.state === "pending" || session.state === "stopping") && !rpc) {
      try {
        const s = (await gql(BY_ID, { id: session.id })).ideSession;
        if (s && s.state !== session.state) show(s);
      } catch { /* the next tick tries again */ }
    }
  }, 3000);
}
