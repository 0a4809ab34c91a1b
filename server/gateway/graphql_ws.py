"""GraphQL over websockets: ``graphql-transport-ws`` and legacy ``graphql-ws``, shared execution.

``handle_ws(request, schema, context_factory)`` serves one websocket upgrade
on ``/graphql``. Both subprotocols are spoken:

* ``graphql-transport-ws``: ``connection_init``/``connection_ack``,
  ``subscribe``/``next``/``error``/``complete``, ``ping``/``pong`` (the server
  pings every ``keepalive`` seconds and answers pings). Protocol violations
  close with the codes of the spec: 4400 bad message, 4401 subscribe before
  ack, 4403 rejected credentials, 4408 no ``connection_init`` in time, 4409
  duplicate id, 4429 second ``connection_init``.
* ``graphql-ws`` (subscriptions-transport-ws): ``connection_init``/``ack``,
  ``ka`` right after the ack and every ``keepalive`` seconds,
  ``start``/``data``/``error``/``complete``/``stop``, ``connection_error``
  on rejected credentials, ``connection_terminate``.

Queries and mutations sent over the socket run through the schema's normal
pipeline (``schema.execute``: extensions, limits, error codes).

Shared execution (why this module exists): strawberry's default path
executes a subscription's selection set once per event *per subscriber*,
which saturates a core at ~100 subscribers of one run. Here subscriptions
with the same *group key* ``(document text, variables, operation name)``
share one :class:`_Group`: an event object handed to several members
(the hubs of :mod:`server.logs.hub` hand the SAME object to all) is executed
once, its result serialized once, and each member gets the same payload
bytes behind its own ``{"id":...,"type":"next","payload":`` prefix, written
straight to its socket (compression is off, so frames are stateless). A
member's frames, including its ``complete``, stay in order because every
frame of a member goes through its group's FIFO.

Authorization is per subscriber and happens at subscribe time: the
subscription field's resolver runs with the subscriber's own context and
returns the event stream only if it may read it (a refusal is an ``error``
message, as a query's refusal would be). The shared execution has no
per-subscriber context: the group executes with a fork of the context of the
member that created it, so subscription payload types must not contain
per-user data (Run, log batches and IDE sessions do not; their relations
are loaded by the hubs, once, with least privilege).

Event streams that implement ``attach(push, writable, end)`` (the hubs'
subscriptions) are driven without a task per subscriber: the hub calls
``push`` synchronously. Others get one task each. Slow consumers: before
writing, the socket's write buffer is checked; above ``max_buffer`` the
event is refused. A resumable stream (``resumable = True``: ``runLogs``)
leaves the live group and resumes from its cursor once the socket drained
(closed with 1013 if it does not drain within ``drain_timeout``); any
other stream's socket is closed with 1013 "slow consumer".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import Any

from aiohttp import WSMsgType, web
from graphql import (
    DocumentNode,
    GraphQLError,
    OperationType,
    create_source_event_stream,
    execute_subscription_event,
    get_operation_ast,
    parse,
    specified_rules,
)
from graphql.execution import ExecutionResult

from server.services.errors import DomainError

log = logging.getLogger("kiln.graphql.ws")

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = (TRANSPORT_WS, LEGACY_WS)


class ConnectionRejected(Exception):
    """Raised by a context factory: the credentials presented are not acceptable."""

    def __init__(self, message: str = "Forbidden") -> None:
        super().__init__(message)
        self.message = message


class SlowConsumer(Exception):
    pass


ContextFactory = Callable[[web.Request, dict[str, Any] | None], Awaitable[Any]]


@dataclass
class WsOptions:
    keepalive: float = 15.0  # seconds between server pings / ka
    init_timeout: float = 10.0  # connection_init must arrive within this
    max_buffer: int = 512 * 1024  # write buffer above which a subscriber is "slow"
    drain_timeout: float = 30.0  # a resumable slow subscriber must drain within this
    max_operations: int = 200  # per connection
    max_message: int = 1024 * 1024
    fork_context: Callable[[Any], Any] | None = None  # a fresh context per operation/event
    code_of: Callable[[GraphQLError], str] | None = None  # extensions.code of an error
    validation_rules: tuple[Any, ...] = ()
    document_cache: int = 256


def _head(n: int) -> bytes:
    """The header of a server→client text frame of ``n`` bytes (unmasked, FIN)."""
    if n < 126:
        return struct.pack("!BB", 0x81, n)
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n)
    return struct.pack("!BBQ", 0x81, 127, n)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode()


class _Registry:
    """Per schema: the document cache, the groups, the keep-alive ticker."""

    def __init__(self, schema: Any, opts: WsOptions) -> None:
        self.schema = schema
        self.opts = opts
        self.docs: OrderedDict[str, tuple[DocumentNode | None, list[GraphQLError]]] = (
            OrderedDict()
        )
        self.groups: dict[Hashable, _Group] = {}
        self.connections: set[_Connection] = set()
        self._ticker: asyncio.Task[None] | None = None
        from strawberry.schema.schema import validate_document

        self._validate = validate_document
        self.rules = (*specified_rules, *opts.validation_rules)
        self.executions = 0  # shared executions done (for tests and /metrics)
        self.frames = 0

    def document(self, query: str) -> tuple[DocumentNode | None, list[GraphQLError]]:
        hit = self.docs.get(query)
        if hit is not None:
            self.docs.move_to_end(query)
            return hit
        try:
            doc = parse(query, max_tokens=4000)
            errors = self._validate(self.schema._schema, doc, self.rules)
            entry: tuple[DocumentNode | None, list[GraphQLError]] = (
                (doc, []) if not errors else (None, list(errors))
            )
        except GraphQLError as exc:
            entry = (None, [exc])
        self.docs[query] = entry
        if len(self.docs) > self.opts.document_cache:
            self.docs.popitem(last=False)
        return entry

    def add(self, conn: _Connection) -> None:
        self.connections.add(conn)
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick(), name="graphql-ws-keepalive")

    async def _tick(self) -> None:
        """One timer for every connection: keep-alives (not one task per socket)."""
        while self.connections:
            await asyncio.sleep(self.opts.keepalive)
            for conn in list(self.connections):
                conn.keepalive()


_REGISTRIES: dict[int, _Registry] = {}


def registry_of(schema: Any, opts: WsOptions | None = None) -> _Registry:
    reg = _REGISTRIES.get(id(schema))
    if reg is None or reg.schema is not schema:
        reg = _REGISTRIES[id(schema)] = _Registry(schema, opts or WsOptions())
    return reg


_END = object()  # a pipeline entry that completes its member


class _Group:
    """Subscriptions with one group key: one execution and one payload per event."""

    __slots__ = (
        "executor",
        "fork",
        "key",
        "last_event",
        "last_payload",
        "members",
        "pending",
        "registry",
        "task",
    )

    def __init__(self, registry: _Registry, key: Hashable, executor: Any, fork: Any) -> None:
        self.registry = registry
        self.key = key
        self.executor = executor
        self.fork = fork
        self.members: set[_Operation] = set()
        self.pending: deque[list[Any]] = deque()  # [event, members, result-or-None]
        self.task: asyncio.Task[None] | None = None
        self.last_event: Any = None
        self.last_payload: bytes | None = None

    def _execute(self, event: Any) -> Any:
        per = self.executor.build_per_event_executor(event)
        if self.fork is not None:
            per.context_value = self.fork()
        self.registry.executions += 1
        return execute_subscription_event(per)

    def _encode(self, event: Any, result: ExecutionResult, member: _Operation) -> bytes:
        payload = member.conn.result_payload(result)
        self.last_event, self.last_payload = event, payload
        return payload

    def publish(self, member: _Operation, event: Any) -> None:
        """Send ``event`` to ``member`` (synchronously unless an execution is pending)."""
        if not self.pending:
            if event is self.last_event and self.last_payload is not None:
                member.write_next(self.last_payload)
                return
            try:
                result = self._execute(event)
                if not isawaitable(result):
                    member.write_next(self._encode(event, result, member))
                    return
            except Exception as exc:  # a failed execution is that event's error, not the hub's
                log.exception("subscription event execution failed")
                member.write_next(
                    member.conn.result_payload(
                        ExecutionResult(None, [GraphQLError(str(exc), original_error=exc)])
                    )
                )
                return
            self.pending.append([event, [member], result])
            self.task = asyncio.create_task(self._drain())
            return
        tail = self.pending[-1]
        if tail[0] is event:
            tail[1].append(member)
        else:
            self.pending.append([event, [member], None])

    def publish_end(self, member: _Operation, exc: BaseException | None) -> None:
        if not self.pending:
            member.finish(exc)
        else:
            self.pending.append([_END, [member], exc])

    async def _drain(self) -> None:
        while self.pending:
            event, members, result = self.pending[0]
            if event is _END:
                self.pending.popleft()
                for m in members:
                    m.finish(result)
                continue
            try:
                if result is None:
                    if event is self.last_event and self.last_payload is not None:
                        payload = self.last_payload
                        result = True
                    else:
                        result = self._execute(event)
                if result is not True:
                    if isawaitable(result):
                        result = await result
                    payload = self._encode(event, result, members[0])
            except Exception as exc:  # never lose the order of later frames
                log.exception("subscription event execution failed")
                payload = members[0].conn.result_payload(
                    ExecutionResult(None, [GraphQLError(str(exc), original_error=exc)])
                )
            self.pending.popleft()
            for m in members:
                m.write_next(payload)

    def leave(self, member: _Operation) -> None:
        self.members.discard(member)
        if not self.members and self.registry.groups.get(self.key) is self:
            del self.registry.groups[self.key]


class _Operation:
    """One subscription (or a running query) of one connection."""

    __slots__ = ("active", "conn", "group", "id", "prefix", "source", "task")

    def __init__(self, conn: _Connection, op_id: str) -> None:
        self.conn = conn
        self.id = op_id
        kind = "next" if conn.protocol == TRANSPORT_WS else "data"
        self.prefix = b'{"id":' + _dumps(op_id) + b',"type":"' + kind.encode() + b'","payload":'
        self.active = True
        self.group: _Group | None = None
        self.source: Any = None
        self.task: asyncio.Task[None] | None = None

    # called by the stream (hub) -------------------------------------------------
    def push(self, event: Any) -> bool:
        if not self.active or self.conn.closing:
            return False
        if self.conn.buffered() > self.conn.opts.max_buffer:
            if not getattr(self.source, "resumable", False):
                self.conn.close_soon(1013, "slow consumer: the socket's write buffer is full")
            return False
        assert self.group is not None
        self.group.publish(self, event)
        return True

    async def writable(self) -> None:
        await self.conn.drained()

    def end(self, exc: BaseException | None) -> None:
        if not self.active:
            return
        if self.group is not None:
            self.group.publish_end(self, exc)
        else:
            self.finish(exc)

    # called by the group ----------------------------------------------------------
    def write_next(self, payload: bytes) -> None:
        """The shared payload behind this member's own prefix, written without copying it."""
        if self.active:
            self.conn.write_parts(self.prefix, payload, b"}")

    def finish(self, exc: BaseException | None) -> None:
        if not self.active:
            return
        if isinstance(exc, SlowConsumer):
            self.conn.close_soon(1013, "slow consumer: the socket did not drain")
        elif exc is not None:
            self.conn.send_error(self.id, [GraphQLError(str(exc), original_error=exc)])
        else:
            self.conn.send({"id": self.id, "type": "complete"})
        self.stop(silent=True)

    def stop(self, *, silent: bool) -> None:
        """Forget the operation (client stop, completion, connection closed)."""
        if not self.active:
            return
        self.active = False
        self.conn.ops.pop(self.id, None)
        if self.group is not None:
            self.group.leave(self)
        src = self.source
        if src is not None:
            close = getattr(src, "close", None)
            if close is not None:
                close()
            else:
                aclose = getattr(src, "aclose", None)
                if aclose is not None:
                    self.conn.spawn(aclose())
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        if not silent and self.conn.protocol == LEGACY_WS:
            self.conn.send({"id": self.id, "type": "complete"})


class _Connection:
    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        registry: _Registry,
        context_factory: ContextFactory,
        opts: WsOptions,
    ) -> None:
        self.request = request
        self.ws = ws
        self.registry = registry
        self.schema = registry.schema
        self.context_factory = context_factory
        self.opts = opts
        self.protocol = ws.ws_protocol or LEGACY_WS
        self.transport: asyncio.Transport | None = request.transport  # type: ignore[assignment]
        self.context: Any = None
        self.acked = False
        self.init_received = False
        self.closing = False
        self.ops: dict[str, _Operation] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- writing ---------------------------------------------------------------
    def buffered(self) -> int:
        t = self.transport
        return t.get_write_buffer_size() if t is not None else 0

    def write(self, data: bytes) -> None:
        t = self.transport
        if self.closing or t is None or t.is_closing():
            return
        t.write(_head(len(data)) + data)
        self.registry.frames += 1

    def write_parts(self, *parts: bytes) -> None:
        t = self.transport
        if self.closing or t is None or t.is_closing():
            return
        t.writelines((_head(sum(map(len, parts))), *parts))
        self.registry.frames += 1

    def send(self, message: dict[str, Any]) -> None:
        self.write(_dumps(message))

    def code_of(self, error: GraphQLError) -> str:
        if self.opts.code_of is not None:
            return self.opts.code_of(error)
        original = error.original_error
        if isinstance(original, DomainError):
            return original.code.upper()
        if original is not None and not isinstance(original, GraphQLError):
            return "INTERNAL_SERVER_ERROR"
        return "GRAPHQL_VALIDATION_FAILED"

    def format_error(self, error: GraphQLError) -> dict[str, Any]:
        ext = dict(error.extensions) if isinstance(error.extensions, dict) else {}
        code = ext.get("code") or self.code_of(error)
        formatted = error.formatted
        if code == "INTERNAL_SERVER_ERROR":
            log.error(
                "subscription resolver failed at %s", error.path, exc_info=error.original_error
            )
            formatted = {**formatted, "message": "internal server error"}
        original = error.original_error
        if isinstance(original, DomainError) and original.field:
            ext.setdefault("field", original.field)
        ext["code"] = code
        return {**formatted, "extensions": ext}

    def result_payload(self, result: Any) -> bytes:
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [self.format_error(e) for e in result.errors]
        extensions = getattr(result, "extensions", None)
        if extensions:
            out["extensions"] = extensions
        return _dumps(out)

    def send_error(self, op_id: str, errors: list[GraphQLError]) -> None:
        formatted = [self.format_error(e) for e in errors]
        payload: Any = formatted if self.protocol == TRANSPORT_WS else formatted[0]
        self.send({"id": op_id, "type": "error", "payload": payload})

    async def drained(self) -> None:
        low = self.opts.max_buffer // 4
        deadline = time.monotonic() + self.opts.drain_timeout
        while self.buffered() > low:
            if self.closing:
                raise asyncio.CancelledError
            if time.monotonic() > deadline:
                raise SlowConsumer("the socket did not drain")
            await asyncio.sleep(0.02)

    def close_soon(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self.spawn(self.ws.close(code=code, message=reason.encode()))

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def keepalive(self) -> None:
        if not self.acked or self.closing:
            return
        self.send({"type": "ping"} if self.protocol == TRANSPORT_WS else {"type": "ka"})

    # -- the protocol ------------------------------------------------------------
    async def serve(self) -> None:
        self.registry.add(self)
        try:
            deadline = time.monotonic() + self.opts.init_timeout
            while not self.ws.closed:
                timeout = None if self.init_received else max(0.0, deadline - time.monotonic())
                try:
                    msg = await self.ws.receive(timeout=timeout)
                except TimeoutError:
                    await self.ws.close(code=4408, message=b"Connection initialisation timeout")
                    return
                if msg.type == WSMsgType.TEXT:
                    await self.on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.ws.close(code=4400, message=b"binary messages are not supported")
                else:
                    return
        finally:
            self.closing = True
            self.registry.connections.discard(self)
            for op in list(self.ops.values()):
                op.stop(silent=True)
            for t in list(self._tasks):
                t.cancel()

    async def on_text(self, data: str) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            await self.ws.close(code=4400, message=b"invalid message")
            return
        kind = msg["type"]
        if self.protocol == TRANSPORT_WS:
            await self.on_transport_ws(kind, msg)
        else:
            await self.on_legacy(kind, msg)

    async def on_transport_ws(self, kind: str, msg: dict[str, Any]) -> None:
        if kind == "connection_init":
            if self.init_received:
                await self.ws.close(code=4429, message=b"Too many initialisation requests")
                return
            self.init_received = True
            await self.init(msg.get("payload"))
        elif kind == "ping":
            pong: dict[str, Any] = {"type": "pong"}
            if isinstance(msg.get("payload"), dict):
                pong["payload"] = msg["payload"]
            self.send(pong)
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            if not self.acked:
                await self.ws.close(code=4401, message=b"Unauthorized")
                return
            op_id, payload = msg.get("id"), msg.get("payload")
            if not isinstance(op_id, str) or not op_id or not isinstance(payload, dict):
                await self.ws.close(code=4400, message=b"invalid subscribe message")
                return
            if op_id in self.ops:
                await self.ws.close(
                    code=4409, message=f"Subscriber for {op_id[:64]} already exists".encode()
                )
                return
            self.start(op_id, payload)
        elif kind == "complete":
            op = self.ops.get(msg.get("id"))  # type: ignore[arg-type]
            if op is not None:
                op.stop(silent=True)
        else:
            await self.ws.close(code=4400, message=f"unknown message type {kind[:40]}".encode())

    async def on_legacy(self, kind: str, msg: dict[str, Any]) -> None:
        if kind == "connection_init":
            self.init_received = True
            await self.init(msg.get("payload"))
        elif kind == "start":
            if not self.acked:
                await self.ws.close(code=4401, message=b"Unauthorized")
                return
            op_id, payload = msg.get("id"), msg.get("payload")
            if not isinstance(op_id, str) or not op_id or not isinstance(payload, dict):
                self.send({"type": "error", "id": op_id, "payload": {"message": "bad start"}})
                return
            old = self.ops.get(op_id)
            if old is not None:
                old.stop(silent=True)
            self.start(op_id, payload)
        elif kind == "stop":
            op = self.ops.get(msg.get("id"))  # type: ignore[arg-type]
            if op is not None:
                op.stop(silent=False)
        elif kind == "connection_terminate":
            await self.ws.close(code=1000)
        else:
            self.send({"type": "error", "payload": {"message": f"unknown type {kind[:40]}"}})

    async def init(self, payload: Any) -> None:
        if payload is not None and not isinstance(payload, dict):
            if self.protocol == TRANSPORT_WS:
                await self.ws.close(code=4400, message=b"Invalid connection init payload")
            else:
                self.send({"type": "connection_error", "payload": {"message": "bad payload"}})
                await self.ws.close(code=1011)
            return
        try:
            self.context = await self.context_factory(self.request, payload)
        except ConnectionRejected as exc:
            if self.protocol == TRANSPORT_WS:
                await self.ws.close(code=4403, message=b"Forbidden")
            else:
                self.send({"type": "connection_error", "payload": {"message": exc.message}})
                await self.ws.close(code=1011)
            return
        self.acked = True
        self.send({"type": "connection_ack"})
        if self.protocol == LEGACY_WS:
            self.send({"type": "ka"})

    # -- operations ----------------------------------------------------------------
    def _context(self) -> Any:
        fork = self.opts.fork_context
        return fork(self.context) if fork is not None else self.context

    def start(self, op_id: str, payload: dict[str, Any]) -> None:
        if len(self.ops) >= self.opts.max_operations:
            self.send_error(op_id, [GraphQLError("too many operations on this connection")])
            return
        query = payload.get("query")
        variables = payload.get("variables") or {}
        op_name = payload.get("operationName") or None
        if (
            not isinstance(query, str)
            or not isinstance(variables, dict)
            or not (op_name is None or isinstance(op_name, str))
        ):
            self.send_error(op_id, [GraphQLError("query must be a string, variables an object")])
            return
        op = _Operation(self, op_id)
        self.ops[op_id] = op
        op.task = asyncio.create_task(self.run(op, query, variables, op_name))

    async def run(
        self, op: _Operation, query: str, variables: dict[str, Any], op_name: str | None
    ) -> None:
        try:
            doc, errors = self.registry.document(query)
            operation = get_operation_ast(doc, op_name) if doc is not None else None
            if doc is None or operation is None:
                self.send_error(op.id, errors or [GraphQLError("unknown operation")])
                op.stop(silent=True)
                return
            if operation.operation != OperationType.SUBSCRIPTION:
                await self.run_once(op, query, variables, op_name)
                return
            await self.subscribe(op, query, doc, variables, op_name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("websocket operation failed")
            if op.active:
                self.send_error(op.id, [GraphQLError(str(exc), original_error=exc)])
                op.stop(silent=True)

    async def run_once(
        self, op: _Operation, query: str, variables: dict[str, Any], op_name: str | None
    ) -> None:
        result = await self.schema.execute(
            query, variable_values=variables, context_value=self._context(), operation_name=op_name
        )
        if not op.active:
            return
        op.write_next(self.result_payload(result))
        op.finish(None)

    async def subscribe(
        self,
        op: _Operation,
        query: str,
        doc: DocumentNode,
        variables: dict[str, Any],
        op_name: str | None,
    ) -> None:
        context = self._context()
        executor = self.schema.execution_context_class.build(
            self.schema._schema,
            doc,
            context_value=context,
            raw_variable_values=variables,
            operation_name=op_name,
        )
        if isinstance(executor, list):  # variable errors
            self.send_error(op.id, executor)
            op.stop(silent=True)
            return
        stream = create_source_event_stream(executor)
        if isawaitable(stream):
            stream = await stream
        if isinstance(stream, ExecutionResult):  # refused by the resolver (authorization)
            self.send_error(op.id, list(stream.errors or [GraphQLError("subscription failed")]))
            op.stop(silent=True)
            return
        op.source = stream
        if not op.active:  # stopped while the resolver ran
            op.stop(silent=True)
            return
        key = (query, json.dumps(variables, sort_keys=True, default=str), op_name)
        group = self.registry.groups.get(key)
        if group is None:
            fork = None
            if self.opts.fork_context is not None:
                base, f = self.context, self.opts.fork_context
                fork = lambda: f(base)  # noqa: E731
            group = self.registry.groups[key] = _Group(self.registry, key, executor, fork)
        group.members.add(op)
        op.group = group
        attach = getattr(stream, "attach", None)
        if attach is not None:
            attach(op.push, op.writable, op.end)
            return
        # a plain async iterator: one task per subscriber (this one)
        try:
            async for event in stream:
                await op.writable()
                if not op.push(event):
                    if not op.active or self.closing:
                        return
            op.end(None)
        except SlowConsumer as exc:
            op.end(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            op.end(exc)


async def handle_ws(
    request: web.Request,
    schema: Any,
    context_factory: ContextFactory,
    options: WsOptions | None = None,
) -> web.StreamResponse:
    """Serve one GraphQL websocket on ``request`` (an upgrade to /graphql)."""
    registry = registry_of(schema, options)
    opts = registry.opts
    ws = web.WebSocketResponse(
        protocols=PROTOCOLS, compress=False, max_msg_size=opts.max_message, autoping=True
    )
    await ws.prepare(request)
    if ws.ws_protocol not in PROTOCOLS:
        await ws.close(code=4406, message=b"Subprotocol not acceptable")
        return ws
    conn = _Connection(request, ws, registry, context_factory, opts)
    try:
        await conn.serve()
    finally:
        with contextlib.suppress(Exception):
            await ws.close()
    return ws


def is_ws_upgrade(request: web.Request) -> bool:
    return (
        request.method == "GET"
        and request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("Connection", "").lower()
    )


@dataclass
class WsStats:
    groups: int = 0
    members: int = 0
    connections: int = 0
    executions: int = 0
    frames: int = 0
    sizes: list[int] = field(default_factory=list)


def stats(schema: Any) -> WsStats:
    reg = _REGISTRIES.get(id(schema))
    if reg is None:
        return WsStats()
    return WsStats(
        groups=len(reg.groups),
        members=sum(len(g.members) for g in reg.groups.values()),
        connections=len(reg.connections),
        executions=reg.executions,
        frames=reg.frames,
        sizes=[len(g.members) for g in reg.groups.values()],
    )


# -- Kiln's glue: the GraphQL context of a websocket -------------------------------------


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if not origin:
        return True  # not a browser
    from urllib.parse import urlsplit

    host = request.headers.get("X-Forwarded-Host") or request.host
    return urlsplit(origin).netloc.lower() == host.lower()


def kiln_options() -> WsOptions:
    """Kiln's limits and error codes for the shared path (the same as for queries)."""
    from graph.errors import error_code
    from graph.limits import RULES

    def fork(ctx: Any) -> Any:
        from graph.context import Context

        c = Context(
            ctx.platform, ctx.presented, account_header=ctx.account_header, request=ctx.request
        )
        c.connection_params = ctx.connection_params
        c._principal = ctx._principal  # who it is was settled at connection_init
        return c

    return WsOptions(fork_context=fork, code_of=error_code, validation_rules=RULES)


async def kiln_context(request: web.Request, params: dict[str, Any] | None) -> Any:
    """Credentials from ``connection_init`` (``authorization``/``token``), else the upgrade
    request's Authorization header or session cookie (same-origin only: a cookie is sent
    by the browser to any site's websocket)."""
    from graph.context import Context
    from server.gateway.app import PLATFORM
    from server.services.auth import (
        SESSION_COOKIE,
        credentials_from_headers,
        credentials_from_params,
    )
    from server.services.errors import Unauthenticated

    presented = credentials_from_params(params)
    if not presented.present:
        presented = credentials_from_headers(
            request.headers.get("Authorization"), request.cookies.get(SESSION_COOKIE)
        )
        if presented.session and not _same_origin(request):
            raise ConnectionRejected("cross-origin websocket with a session cookie")
    account = (params or {}).get("accountId") or request.headers.get("X-Kiln-Account")
    ctx = Context(
        request.app[PLATFORM],
        presented,
        account_header=account if isinstance(account, str) else None,
        request=request,
    )
    ctx.connection_params = params
    if presented.present:
        try:
            await ctx.principal()
        except Unauthenticated as exc:
            raise ConnectionRejected(str(exc)) from None
    return ctx
