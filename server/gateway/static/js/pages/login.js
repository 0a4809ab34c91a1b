// Login: email and password; the server answers with the HttpOnly session cookie.

import { mutate } from "../api.js";
import { h } from "../dom.js";
import { navigate } from "../router.js";
import { loadSession } from "../state.js";

const LOGIN = `mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) { user { id email } errors { code message field } }
}`;

function safeNext(next) {
  return next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/login") ? next : "/jobs";
}

export async function render(main, _params, _scope, query) {
  const error = h("p", { class: "error", role: "alert", id: "login-error" });
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true, "data-autofocus": true });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h("form", { class: "form", "aria-describedby": "login-error", novalidate: true },
    h("label", { for: "email" }, "Email", email),
    h("label", { for: "password" }, "Password", password),
    submit, error);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    if (!email.value || !password.value) { error.textContent = "Enter your email and password."; return; }
    submit.disabled = true;
    try {
      await mutate(LOGIN, { email: email.value.trim(), password: password.value });
      await loadSession();
      window.dispatchEvent(new CustomEvent("kiln:login"));
      navigate(safeNext(query.get("next")), { replace: true });
    } catch (err) {
      error.textContent = err.message;
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  main.append(h("section", { class: "login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in to Kiln"), form));
}
