// A small GraphQL over WebSocket client speaking graphql-transport-ws.
//
// One socket for all subscriptions; opened on the first subscribe, closed a
// little after the last one ends. connection_init carries the connection
// params (the account; the session cookie of the upgrade authenticates).
// The server's pings are answered with pongs. When the socket drops for any
// reason but a refusal, it reconnects with backoff and subscribes again;
// `variables` may be a function, called at every (re)subscribe, so a stream
// such as runLogs resumes from its cursor.

const PROTOCOL = "graphql-transport-ws";
const FATAL = new Set([4400, 4401, 4403, 4406, 4409, 4429]);
const IDLE_CLOSE_MS = 2000;

export class GqlWs {
  constructor({ url, connectionParams = () => ({}), onStatus = () => {} } = {}) {
    this.url = url || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
    this.connectionParams = connectionParams;
    this.onStatus = onStatus;
    this.ops = new Map(); // id -> { query, variables, operationName, sink, sent }
    this.nextId = 1;
    this.ws = null;
    this.acked = false;
    this.retries = 0;
    this.retryTimer = null;
    this.idleTimer = null;
    this.closeWhenOpen = false;
  }

  /** Subscribe; sink = { next(data), error(errors), complete() }. Returns an unsubscribe function. */
  subscribe({ query, variables = {}, operationName = null }, sink) {
    const id = String(this.nextId++);
    const op = { query, variables, operationName, sink, sent: false };
    this.ops.set(id, op);
    clearTimeout(this.idleTimer);
    if (this.acked) this._send_subscribe(id, op);
    else this._connect();
    return () => this._unsubscribe(id);
  }

  /** Close and reconnect (new connection params, e.g. after switching accounts). */
  restart() {
    if (!this.ws) return;
    const ws = this.ws;
    this._drop();
    this._close(ws, 1000, "restart");
    if (this.ops.size) this._connect();
  }

  _unsubscribe(id) {
    const op = this.ops.get(id);
    if (!op) return;
    this.ops.delete(id);
    if (op.sent && this.acked) this._send({ id, type: "complete" });
    if (!this.ops.size) {
      clearTimeout(this.idleTimer);
      this.idleTimer = setTimeout(() => {
        if (!this.ops.size && this.ws) {
          const ws = this.ws;
          this._drop();
          this._close(ws, 1000, "idle");
          this.onStatus("idle");
        }
      }, IDLE_CLOSE_MS);
    }
  }

  _connect() {
    if (this.ws || this.retryTimer) return;
    this.onStatus(this.retries ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url, PROTOCOL);
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) { this._close(ws, 1000, "stale"); return; }
      let payload = {};
      try { payload = this.connectionParams() || {}; } catch { payload = {}; }
      this._send({ type: "connection_init", payload });
    };
    ws.onmessage = (ev) => { if (this.ws === ws) this._message(ev.data); };
    ws.onclose = (ev) => { if (this.ws === ws) this._closed(ev.code, ev.reason); };
    ws.onerror = () => {}; // onclose follows and decides
  }

  _close(ws, code, reason) {
    ws.onmessage = null;
    ws.onclose = null;
    if (ws.readyState === WebSocket.CONNECTING) {
      ws.onopen = () => ws.close(code, reason); // closing a connecting socket logs an error
    } else if (ws.readyState === WebSocket.OPEN) {
      ws.close(code, reason);
    }
  }

  _drop() {
    this.ws = null;
    this.acked = false;
    for (const op of this.ops.values()) op.sent = false;
  }

  _send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  _send_subscribe(id, op) {
    const variables = typeof op.variables === "function" ? op.variables() : op.variables;
    const payload = { query: op.query, variables };
    if (op.operationName) payload.operationName = op.operationName;
    op.sent = true;
    this._send({ id, type: "subscribe", payload });
  }

  _message(raw) {
    let msg;
    try { msg = JSON.parse(raw); } catch { return; }
    const op = msg.id != null ? this.ops.get(msg.id) : null;
    switch (msg.type) {
      case "connection_ack":
        this.acked = true;
        this.retries = 0;
        this.onStatus("connected");
        for (const [id, o] of this.ops) if (!o.sent) this._send_subscribe(id, o);
        break;
      case "ping":
        this._send({ type: "pong" });
        break;
      case "next":
        if (!op) break;
        if (msg.payload && msg.payload.errors && !msg.payload.data) {
          this.ops.delete(msg.id);
          op.sink.error && op.sink.error(msg.payload.errors);
        } else {
          op.sink.next && op.sink.next(msg.payload.data, msg.payload.errors);
        }
        break;
      case "error":
        if (!op) break;
        this.ops.delete(msg.id);
        op.sink.error && op.sink.error(Array.isArray(msg.payload) ? msg.payload : [msg.payload]);
        break;
      case "complete":
        if (!op) break;
        this.ops.delete(msg.id);
        op.sink.complete && op.sink.complete();
        break;
      default:
        break;
    }
  }

  _closed(code, reason) {
    this._drop();
    if (FATAL.has(code)) {
      const errors = [{ message: reason || `connection refused (${code})`, extensions: { code: String(code) } }];
      const ops = [...this.ops.values()];
      this.ops.clear();
      for (const op of ops) op.sink.error && op.sink.error(errors);
      this.onStatus("closed");
      return;
    }
    if (!this.ops.size) { this.onStatus("idle"); return; }
    for (const op of this.ops.values()) op.sink.reconnecting && op.sink.reconnecting();
    const delay = Math.min(15000, 300 * 2 ** this.retries) + Math.random() * 250;
    this.retries += 1;
    this.onStatus("reconnecting");
    this.retryTimer = setTimeout(() => { this.retryTimer = null; this._connect(); }, delay);
  }
}
