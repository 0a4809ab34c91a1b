// JSON-RPC 2.0 over the IDE websocket (/ide/<session>/ws, authenticated by the session cookie).

export class RpcError extends Error {
  constructor(error) {
    super(error.message || "request failed");
    this.code = error.code;
    this.data = error.data || null;
  }
}

export class Rpc {
  constructor(url) {
    this.url = url;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> { resolve, reject }
    this.handlers = new Map(); // notification method -> Set(fn)
    this.closeHandlers = new Set();
  }

  /** Resolves once the socket is open; rejects if it cannot be opened. */
  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      let opened = false;
      ws.onopen = () => { opened = true; resolve(this); };
      ws.onmessage = (ev) => this._message(ev.data);
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        const err = new RpcError({ code: -32000, message: `IDE connection closed (${ev.code})` });
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
        if (!opened) reject(err);
        else for (const fn of this.closeHandlers) fn(ev);
      };
    });
  }

  get open() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  call(method, params = {}) {
    if (!this.open) return Promise.reject(new RpcError({ code: -32000, message: "not connected to the IDE" }));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  on(method, fn) {
    if (!this.handlers.has(method)) this.handlers.set(method, new Set());
    this.handlers.get(method).add(fn);
    return () => this.handlers.get(method).delete(fn);
  }

  onClose(fn) {
    this.closeHandlers.add(fn);
  }

  close() {
    this.closeHandlers.clear();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.close(1000, "bye");
    else if (this.ws && this.ws.readyState === WebSocket.CONNECTING) this.ws.onopen = () => this.ws.close(1000, "bye");
  }

  _message(raw) {
    let msgs;
    try { msgs = JSON.parse(raw); } catch { return; }
    for (const msg of Array.isArray(msgs) ? msgs : [msgs]) {
      if (msg.id != null && this.pending.has(msg.id)) {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.error) p.reject(new RpcError(msg.error)); else p.resolve(msg.result);
      } else if (msg.method) {
        for (const fn of this.handlers.get(msg.method) || []) fn(msg.params || {});
      }
    }
  }
}
