// Client-side routes (history API). The gateway answers index.html for the same paths
// (server/gateway/console.py CLIENT_ROUTES): keep the two lists in step.

import { clear } from "./dom.js";
import { ws } from "./live.js";

const routes = []; // { pattern: RegExp, keys, load, title }
let current = null; // { scope }
let guard = () => null;
const afterListeners = new Set();

/** What a page may tie to its lifetime: subscriptions, timers, listeners. */
export class Scope {
  constructor() {
    this.cleanups = [];
    this.closed = false;
  }
  add(fn) {
    if (this.closed) fn(); else this.cleanups.push(fn);
    return fn;
  }
  interval(fn, ms) {
    const t = setInterval(fn, ms);
    this.add(() => clearInterval(t));
  }
  listen(target, type, fn, opts) {
    target.addEventListener(type, fn, opts);
    this.add(() => target.removeEventListener(type, fn, opts));
  }
  /** A subscription on the shared websocket, ended with the page. */
  subscribe(request, sink) {
    if (this.closed) return () => {};
    return this.add(ws.subscribe(request, sink));
  }
  close() {
    this.closed = true;
    for (const fn of this.cleanups.splice(0).reverse()) {
      try { fn(); } catch (err) { console.warn("cleanup failed", err); }
    }
  }
}

/** route("/runs/:id", () => import("./pages/run.js")) */
export function route(path, load) {
  const keys = [];
  const pattern = new RegExp(
    "^" + path.replace(/:(\w+)/g, (_, k) => { keys.push(k); return "([^/]+)"; }) + "/?$",
  );
  routes.push({ pattern, keys, load });
}

export function setGuard(fn) {
  guard = fn;
}

export function onNavigated(fn) {
  afterListeners.add(fn);
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  return render();
}

export function currentPath() {
  return location.pathname;
}

export async function render() {
  const redirect = guard(location.pathname);
  if (redirect && redirect !== location.pathname + location.search) {
    history.replaceState(null, "", redirect);
  }
  const path = location.pathname;
  const main = document.getElementById("main");
  if (current) current.scope.close();
  const scope = new Scope();
  current = { scope };
  let match = null;
  let params = {};
  for (const r of routes) {
    const m = r.pattern.exec(path);
    if (m) {
      match = r;
      r.keys.forEach((k, i) => { params[k] = decodeURIComponent(m[i + 1]); });
      break;
    }
  }
  clear(main);
  main.classList.remove("wide");
  for (const fn of afterListeners) fn(path);
  if (!match) {
    const { renderNotFound } = await import("./pages/notfound.js");
    renderNotFound(main);
    focusHeading(main);
    return;
  }
  const page = await match.load();
  if (scope.closed) return;
  try {
    await page.render(main, params, scope, new URLSearchParams(location.search));
  } catch (err) {
    if (scope.closed) return;
    const { renderError } = await import("./pages/notfound.js");
    renderError(main, err);
  }
  if (!scope.closed) focusHeading(main);
}

function focusHeading(main) {
  const h1 = main.querySelector("h1");
  document.title = h1 ? `${h1.textContent} · Kiln` : "Kiln";
  const target = main.querySelector("[data-autofocus]") || h1 || main;
  if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
  // keep the keyboard where it is on first load; move it to the page after a navigation
  if (document.activeElement === document.body || document.activeElement?.closest("#main, #topbar")) {
    target.focus({ preventScroll: true });
  }
}

export function start() {
  window.addEventListener("popstate", () => render());
  document.addEventListener("click", (ev) => {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const a = ev.target.closest("a[href]");
    if (!(a instanceof HTMLAnchorElement) || a.target || a.hasAttribute("download") || a.dataset.external != null) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !routes.some((r) => r.pattern.test(url.pathname))) return;
    ev.preventDefault();
    if (url.pathname + url.search !== location.pathname + location.search) navigate(url.pathname + url.search);
  });
  return render();
}
