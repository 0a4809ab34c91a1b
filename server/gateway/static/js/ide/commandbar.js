// The command bar: "dbt <command>" through dbt.invoke, output streamed from dbt.log
// notifications into a virtualized view, cancellable with dbt.cancel.

import { h } from "../dom.js";
import { LogView } from "../logview.js";

/** "build -s 'tag:x y'" -> ["build", "-s", "tag:x y"] (quotes group, no other shell syntax). */
export function splitArgs(text) {
  const out = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m;
  while ((m = re.exec(text))) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

function toLine(params, seq) {
  const line = params.line;
  if (line && typeof line === "object") {
    const info = line.info || {};
    return { seq, step: null, ts: info.ts || null, level: info.level || "info", message: info.msg ?? JSON.stringify(line) };
  }
  return { seq, step: null, ts: null, level: params.stream === "stderr" ? "warn" : "info", message: String(line) };
}

export class CommandBar {
  constructor(rpc, { onFinished = () => {} } = {}) {
    this.rpc = rpc;
    this.onFinished = onFinished;
    this.running = null;
    this.count = 0;
    this.seq = 0;
    this.view = new LogView({ label: "Command output", empty: "Run a dbt command to see its output here.", short: true });
    this.input = h("input", { id: "command", type: "text", value: "build", spellcheck: "false",
      autocomplete: "off", "aria-label": "dbt command (without 'dbt')" });
    this.runBtn = h("button", { type: "submit", class: "primary", id: "command-run" }, "Run");
    this.cancelBtn = h("button", { type: "button", id: "command-cancel", disabled: true }, "Cancel");
    this.state = h("span", { class: "muted", id: "command-state", "aria-live": "polite" });
    const form = h("form", { class: "cmdbar", "aria-label": "dbt command bar" },
      h("label", { for: "command" }, h("code", {}, "dbt")), this.input, this.runBtn, this.cancelBtn, this.state);
    form.addEventListener("submit", (ev) => { ev.preventDefault(); this.run(); });
    this.cancelBtn.addEventListener("click", () => this.cancel());
    this.el = h("div", { class: "command" }, form, this.view.wrap);
    this.off = rpc.on("dbt.log", (p) => {
      if (this.running && p.invocation === this.running) this.view.append([toLine(p, ++this.seq)]);
    });
  }

  destroy() {
    this.off();
    this.view.destroy();
  }

  async run() {
    if (this.running) return;
    let args = splitArgs(this.input.value.trim());
    if (args[0] === "dbt") args = args.slice(1);
    if (!args.length) { this.state.textContent = "Type a dbt command, e.g. build -s my_model"; return; }
    const id = `console-${Date.now().toString(36)}-${++this.count}`;
    this.running = id;
    this.view.clear();
    this.view.follow = true;
    this.view.append([{ seq: ++this.seq, step: null, ts: new Date().toISOString(), level: "info", message: `$ dbt ${args.join(" ")}` }]);
    this.runBtn.disabled = true;
    this.cancelBtn.disabled = false;
    this.state.textContent = "Running…";
    this.state.dataset.state = "running";
    try {
      const res = await this.rpc.call("dbt.invoke", { args, invocation: id });
      const verdict = res.cancelled ? "cancelled" : res.success ? "succeeded" : `failed (exit ${res.exitCode})`;
      this.state.textContent = `dbt ${args[0]} ${verdict} in ${res.elapsed.toFixed(1)}s`;
      this.state.dataset.state = res.cancelled ? "cancelled" : res.success ? "success" : "error";
      this.onFinished(res, args);
    } catch (err) {
      this.state.textContent = err.message;
      this.state.dataset.state = "error";
    } finally {
      this.running = null;
      this.runBtn.disabled = false;
      this.cancelBtn.disabled = true;
    }
  }

  async cancel() {
    if (!this.running) return;
    this.cancelBtn.disabled = true;
    this.state.textContent = "Cancelling…";
    try { await this.rpc.call("dbt.cancel", { invocation: this.running }); } catch (err) { this.state.textContent = err.message; }
  }
}
