// "Not found" and "something went wrong" pages.

import { h } from "../dom.js";

export function renderNotFound(main) {
  main.append(
    h("h1", {}, "Not found"),
    h("p", {}, "There is no page here. ", h("a", { href: "/jobs" }, "Go to the jobs")),
  );
}

export function renderError(main, err) {
  main.append(
    h("h1", {}, err && err.code === "NOT_FOUND" ? "Not found" : "Something went wrong"),
    h("p", { class: "notice error", role: "alert" }, err ? err.message : "Unknown error"),
  );
}
