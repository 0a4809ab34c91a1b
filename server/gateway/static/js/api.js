// GraphQL over HTTP (POST /graphql with the session cookie) and the account the console acts in.

const ACCOUNT_KEY = "kiln.account";
let account = sessionStorage.getItem(ACCOUNT_KEY) || localStorage.getItem(ACCOUNT_KEY) || null;

export class ApiError extends Error {
  constructor(message, code = "ERROR", field = null) {
    super(message);
    this.code = code;
    this.field = field;
  }
}

export function currentAccount() {
  return account;
}

export function setAccount(id) {
  account = id || null;
  if (account) {
    sessionStorage.setItem(ACCOUNT_KEY, account);
    localStorage.setItem(ACCOUNT_KEY, account);
  }
}

/** Relay global id of a type and integer id (base64url of "Type:id", unpadded). */
export function globalId(type, pk) {
  return btoa(`${type}:${pk}`).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The data of a query; throws ApiError with the first error's code. */
export async function gql(query, variables = {}) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (account) headers["X-Kiln-Account"] = account;
  let res;
  try {
    res = await fetch("/graphql", {
      method: "POST",
      credentials: "same-origin",
      headers,
      body: JSON.stringify({ query, variables }),
    });
  } catch (err) {
    throw new ApiError(`Kiln is unreachable: ${err.message}`, "NETWORK");
  }
  let body;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(`Unexpected answer from the server (HTTP ${res.status})`, "HTTP");
  }
  if (body.errors && body.errors.length) {
    const e = body.errors[0];
    const code = (e.extensions && e.extensions.code) || "ERROR";
    if (code === "UNAUTHENTICATED") window.dispatchEvent(new CustomEvent("kiln:unauthenticated"));
    throw new ApiError(e.message, code);
  }
  return body.data;
}

/** The payload of a one-field mutation; its first UserError is thrown as ApiError. */
export async function mutate(query, variables = {}) {
  const data = await gql(query, variables);
  const payload = Object.values(data)[0];
  if (payload && payload.errors && payload.errors.length) {
    const e = payload.errors[0];
    throw new ApiError(e.message, e.code, e.field);
  }
  return payload;
}
