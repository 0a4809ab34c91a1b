// The console's shell: top bar (navigation, account and project switchers, user) and routes.

import { mutate } from "./api.js";
import { h, replace, toast } from "./dom.js";
import { ws, onLiveStatus } from "./live.js";
import { navigate, onNavigated, render, route, setGuard, start } from "./router.js";
import { can, loadSession, loggedOut, onChange, state, switchAccount, switchProject } from "./state.js";

route("/login", () => import("./pages/login.js"));
route("/", () => import("./pages/jobs.js"));
route("/jobs", () => import("./pages/jobs.js"));
route("/jobs/:id", () => import("./pages/job.js"));
route("/runs", () => import("./pages/runs.js"));
route("/runs/:id", () => import("./pages/run.js"));
route("/develop", () => import("./pages/ide.js"));

setGuard((path) => {
  if (!state.viewer && path !== "/login") {
    const next = path === "/" ? "" : `?next=${encodeURIComponent(path + location.search)}`;
    return `/login${next}`;
  }
  if (state.viewer && path === "/login") return "/jobs";
  return null;
});

let livePill = null;
onLiveStatus((s) => {
  if (!livePill) return;
  livePill.textContent = s === "connected" ? "Live" : s === "reconnecting" ? "Reconnecting…" : "";
  livePill.dataset.state = s;
});

function navLink(path, label, current) {
  const active = current === path || current.startsWith(path + "/") || (path === "/jobs" && current === "/");
  return h("li", {}, h("a", { href: path, "aria-current": active ? "page" : null }, label));
}

function renderTopbar(path = location.pathname) {
  const bar = document.getElementById("topbar");
  if (!state.viewer) { replace(bar, h("a", { class: "brand", href: "/login" }, "Kiln")); return; }
  const v = state.viewer;
  const accounts = v.accounts.length > 1
    ? h("label", {}, "Account",
        h("select", { id: "account-switcher", onChange: (e) => switchAccount(e.target.value).catch((err) => toast(err.message, "error")) },
          v.accounts.map((a) => h("option", { value: a.account.id, selected: v.account && a.account.id === v.account.id }, `${a.account.name} (${a.role})`))))
    : h("span", { class: "who" }, v.account ? v.account.name : "");
  const projects = h("label", {}, "Project",
    h("select", { id: "project-switcher", disabled: state.projects.length === 0, onChange: (e) => switchProject(e.target.value) },
      state.projects.length === 0 ? h("option", {}, "no projects") : null,
      state.projects.map((p) => h("option", { value: p.id, selected: state.project && p.id === state.project.id }, p.name))));
  livePill = h("span", { class: "muted", "aria-live": "polite" });
  replace(bar,
    h("a", { class: "brand", href: "/jobs" }, "Kiln"),
    h("nav", { "aria-label": "Main" },
      h("ul", {},
        navLink("/jobs", "Jobs", path),
        navLink("/runs", "Runs", path),
        can("develop") ? navLink("/develop", "IDE", path) : null)),
    h("span", { class: "spacer" }),
    livePill,
    accounts,
    projects,
    h("span", { class: "who", title: v.role ? `role: ${v.role}` : null }, v.user ? v.user.email : "token", v.role ? ` · ${v.role}` : ""),
    h("button", { type: "button", id: "logout", onClick: logout }, "Log out"),
  );
}

async function logout() {
  try { await mutate("mutation { logout { ok errors { code message } } }"); } catch (err) { toast(err.message, "error"); }
  loggedOut();
  ws.restart();
  renderTopbar();
  navigate("/login", { replace: true });
}

window.addEventListener("kiln:unauthenticated", () => {
  if (!state.viewer) return;
  loggedOut();
  renderTopbar();
  navigate(`/login?next=${encodeURIComponent(location.pathname)}`, { replace: true });
});

window.addEventListener("kiln:login", () => {
  ws.restart();
  renderTopbar();
});

onNavigated((path) => renderTopbar(path));
onChange((what) => {
  if (what === "account") ws.restart();
  renderTopbar();
  render();
});

async function boot() {
  try {
    await loadSession();
  } catch (err) {
    replace(document.getElementById("main"), h("p", { class: "notice error", role: "alert" }, `Kiln is unavailable: ${err.message}`));
    return;
  }
  renderTopbar();
  await start();
}

boot();
