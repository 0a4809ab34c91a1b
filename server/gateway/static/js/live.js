// The console's one GraphQL websocket, acting in the current account.

import { currentAccount } from "./api.js";
import { GqlWs } from "./gql-ws.js";

const listeners = new Set();
let status = "idle";

export const ws = new GqlWs({
  connectionParams: () => (currentAccount() ? { accountId: currentAccount() } : {}),
  onStatus: (s) => { status = s; for (const fn of listeners) fn(s); },
});

export function liveStatus() {
  return status;
}

export function onLiveStatus(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
