// The git panel: branch and status, diff, commit, pull, push (git.* methods).

import { h, replace, toast } from "../dom.js";

export class GitPanel {
  constructor(rpc) {
    this.rpc = rpc;
    this.branch = h("span", { id: "git-branch" }, "…");
    this.files = h("ul", { class: "git-files", id: "git-files", "aria-label": "Changed files" });
    this.diff = h("pre", { class: "diff", id: "git-diff", hidden: true });
    this.message = h("textarea", { id: "commit-message", rows: 3, placeholder: "Commit message", "aria-label": "Commit message" });
    this.output = h("p", { class: "muted", id: "git-output", "aria-live": "polite" });
    const button = (label, id, fn) => {
      const b = h("button", { type: "button", id }, label);
      b.addEventListener("click", async () => { b.disabled = true; try { await fn(); } finally { b.disabled = false; } });
      return b;
    };
    this.el = h("section", { class: "side-section", "aria-labelledby": "git-title" },
      h("h2", { id: "git-title" }, "Git"),
      h("p", {}, "Branch: ", this.branch),
      h("div", { class: "toolbar" },
        button("Refresh", "git-refresh", () => this.refresh()),
        button("Diff", "git-diff-btn", () => this.showDiff()),
        button("Pull", "git-pull", () => this.remote("git.pull", "Pulled")),
        button("Push", "git-push", () => this.remote("git.push", "Pushed"))),
      this.files, this.diff,
      this.message,
      h("div", { class: "toolbar" }, button("Commit all", "git-commit", () => this.commit())),
      this.output);
  }

  async refresh() {
    try {
      const st = await this.rpc.call("git.status");
      const ab = st.ahead || st.behind ? ` (↑${st.ahead} ↓${st.behind})` : "";
      this.branch.textContent = (st.branch || "(detached)") + ab;
      replace(this.files, st.files.length
        ? st.files.map((f) => h("li", {}, h("span", { class: "st" }, f.status), h("span", {}, f.path)))
        : h("li", { class: "muted" }, "No changes."));
      return st;
    } catch (err) {
      this.output.textContent = err.message;
      return null;
    }
  }

  async showDiff() {
    try {
      const res = await this.rpc.call("git.diff", {});
      this.diff.hidden = false;
      replace(this.diff, res.diff
        ? res.diff.split("\n").map((line) => h("span", { class: line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : null }, line + "\n"))
        : "No unstaged changes.");
    } catch (err) {
      this.output.textContent = err.message;
    }
  }

  async commit() {
    const message = this.message.value.trim();
    if (!message) { this.output.textContent = "Write a commit message first."; this.message.focus(); return; }
    try {
      const res = await this.rpc.call("git.commit", { message });
      this.message.value = "";
      this.diff.hidden = true;
      this.output.textContent = `Committed ${res.sha.slice(0, 10)} on ${res.branch}.`;
      toast(`Committed ${res.sha.slice(0, 10)}`);
      await this.refresh();
    } catch (err) {
      this.output.textContent = `Commit failed: ${err.message}`;
    }
  }

  async remote(method, done) {
    try {
      const res = await this.rpc.call(method);
      this.output.textContent = `${done}: ${res.output || res.head}`;
      await this.refresh();
    } catch (err) {
      this.output.textContent = `${method.split(".")[1]} failed: ${err.message}`;
    }
  }
}
