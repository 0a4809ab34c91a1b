"""Live fan-out of run logs and run/IDE events to any number of subscribers.

Each API process has ONE :class:`~server.events.EventListener` (one LISTEN
connection, shared with the scheduler and the dispatcher) and one
:class:`LogHub` and two :class:`EventHub` on top of it. Nothing here opens a
database connection per subscriber.

Log hub invariants
==================

* **Read once.** For each run with subscribers the hub keeps a *watch* with
  ``last_seq``, the highest seq it has handed out. On ``NOTIFY run_logs
  '<run>:<seq>'`` with ``seq > last_seq`` it reads ``seq > last_seq`` once
  (reads of one run are serialised; notifications during a read make it read
  again) and hands the SAME immutable :class:`LogBatch` object to every live
  subscriber, so the transport can execute and serialize it once.
* **Contiguous.** Seqs are gap-free per run (the worker numbers them and
  sends batches strictly in order). A batch the hub hands out starts at
  ``last_seq + 1``; if the rows read start later (a batch committed out of
  order) the hub waits up to ``gap_wait`` seconds for the hole to fill, then
  accepts it (a hole that never fills must not stall the run's viewers). Once
  the run is final nothing can fill a hole, and everything is accepted.
* **No gap, no duplicate for a subscriber.** A subscription has a ``cursor``
  (the last seq it delivered) and is either *catching up* (reading the store
  itself: table or archive, via :class:`~server.logs.read.LogReader`) or
  *live* (receiving the hub's batches). It turns live only when, right after
  a read and without yielding to the loop, ``cursor >= watch.last_seq``: the
  next hub batch starts at ``last_seq + 1 <= cursor + 1``. Lines at or below
  the cursor are trimmed from any batch, so overlap never duplicates.
* **Slow subscribers never block.** Handing a batch to a live subscriber is
  synchronous and bounded: in pull mode it is queued (at most ``buffer``
  batches), in push mode the transport's sink takes it or refuses it (its
  socket's write buffer is over the threshold). On overflow or refusal the
  batch is NOT delivered, the subscriber leaves the live set and catches up
  from the store at its cursor once its consumer has drained. The hub and
  the ingest never wait for a subscriber.
* **Done.** When the run reaches a final status (``run_events``), the hub
  reads to the end once more and hands out a batch with ``done=True``; every
  subscriber completes after it. A run already final when subscribed to is
  served from the store alone (no watch), ending with ``done=True``.
* **Reconnects lose nothing.** NOTIFY is not durable: after the LISTEN
  connection is re-established the hub re-reads every watch from its
  ``last_seq`` and re-checks the run's status.
* **Same-process shortcut.** A batch ingested by this very process (the
  common ``kiln up`` case) is handed out straight from the ingest call, after
  its commit (:func:`server.logs.ingest.on_appended`), if it continues the
  watch exactly at ``last_seq + 1``; otherwise, and for batches ingested
  elsewhere, the NOTIFY and one read do it. Either way a line is handed out
  once: whatever path comes second finds it at or below ``last_seq``. (One
  process serves one database; the shortcut relies on that.)

Event hub invariants
====================

* One parse and one ``load`` per event and key, whatever the number of
  subscribers; the loaded object is shared.
* Events are processed in order (one consumer), so a subscriber never sees
  an older state after a newer one.
* Events carry no state of their own: the loader reads the current row, so
  dropping intermediate events never leaves a subscriber stale. A pull-mode
  subscriber over its buffer loses the oldest queued events; a push-mode one
  is refused by its transport, which closes it.
* After a reconnect each key's ``resync`` (if any) re-emits events for what
  may have changed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from server.events import EventListener
from server.logs.read import LogLine, LogReader, RunLogInfo, log_reader
from server.runs.state import RunEvent

log = logging.getLogger("kiln.logs.hub")

T = TypeVar("T")
E = TypeVar("E")

CATCHUP, LIVE, DONE, CLOSED = "catchup", "live", "done", "closed"

# push mode: push(item) -> accepted?; writable() waits until the consumer can take more;
# end(exc) is told when the stream is over (None) or failed
Push = Callable[[Any], bool]
Writable = Callable[[], Awaitable[None]]
End = Callable[[BaseException | None], None]


def _fits(lines: list[LogLine] | tuple[LogLine, ...], max_bytes: int) -> int:
    """How many leading lines fit in about ``max_bytes`` of messages (at least one)."""
    total = 0
    for i, ln in enumerate(lines):
        total += len(ln.message) + 100
        if total > max_bytes and i:
            return i
    return len(lines)


@dataclass(frozen=True, slots=True)
class LogBatch:
    """What ``runLogs`` yields: lines after the previous cursor, the new cursor, done."""

    run_id: int
    lines: tuple[LogLine, ...]
    cursor: int
    done: bool = False


class LogSubscription:
    """One subscriber's stream of :class:`LogBatch` for one run.

    Pull mode: ``async for batch in sub``. Push mode: :meth:`attach` a sink;
    the hub then calls it synchronously and no task exists per subscriber
    except while it catches up.
    """

    __slots__ = (
        "_end",
        "_push",
        "_queue",
        "_task",
        "_wake",
        "_watch",
        "_writable",
        "account_id",
        "cursor",
        "hub",
        "run_id",
        "state",
    )
    resumable = True

    def __init__(self, hub: LogHub, info: RunLogInfo, after: int, watch: _RunWatch | None):
        self.hub = hub
        self.run_id = info.id
        self.account_id = info.account_id
        self.cursor = max(0, after)
        self.state = CATCHUP
        self._watch = watch
        self._queue: deque[LogBatch] = deque()
        self._wake: asyncio.Event | None = None
        self._push: Push | None = None
        self._writable: Writable | None = None
        self._end: End | None = None
        self._task: asyncio.Task[None] | None = None

    # -- pull mode -------------------------------------------------------------
    def __aiter__(self) -> LogSubscription:
        return self

    async def __anext__(self) -> LogBatch:
        while True:
            if self._queue:
                return self._queue.popleft()
            if self.state in (DONE, CLOSED):
                raise StopAsyncIteration
            if self.state == CATCHUP:
                batch = await self._next_catch_up()
                if self.state == CLOSED:
                    raise StopAsyncIteration
                if batch is None:
                    self._caught_up()
                    continue
                self._applied(batch)
                return batch
            if self._wake is None:
                self._wake = asyncio.Event()
            self._wake.clear()
            await self._wake.wait()

    async def aclose(self) -> None:
        self.close()

    # -- push mode -------------------------------------------------------------
    def attach(self, push: Push, writable: Writable, end: End) -> None:
        """Deliver by calling ``push`` from now on (before any item was pulled)."""
        self._push, self._writable, self._end = push, writable, end
        self._start_pump()

    def _start_pump(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._pump(), name=f"logs-catchup-{self.run_id}")

    async def _pump(self) -> None:
        assert self._push is not None and self._writable is not None
        try:
            while self.state == CATCHUP:
                await self._writable()
                batch = await self._next_catch_up()
                if self.state != CATCHUP:
                    return
                if batch is None:
                    self._caught_up()
                    continue
                if self._push(batch):
                    self._applied(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("log subscription failed: %s", exc, extra={"run_id": self.run_id})
            self._finish(exc)

    # -- shared ----------------------------------------------------------------
    async def _next_catch_up(self) -> LogBatch | None:
        """The next batch read from the store, or None once ``cursor`` reached the hub."""
        reader = self.hub.reader
        w = self._watch
        page = self.hub.page
        if w is None:  # the run was final when subscribed: the store has everything
            lines = await reader.after(self.run_id, self.account_id, self.cursor, page)
            if not lines:
                return LogBatch(self.run_id, (), self.cursor, True)
            n = _fits(lines, self.hub.batch_bytes)
            done = n == len(lines) < page
            return LogBatch(self.run_id, tuple(lines[:n]), lines[n - 1].seq, done)
        for attempt in range(100):
            if not w.ready.done():
                await asyncio.shield(w.ready)
            if self.cursor >= w.last_seq:
                return None
            lines = await reader.after(self.run_id, self.account_id, self.cursor, page)
            # below the hub's mark anything goes (the hub already decided on holes);
            # above it only the contiguous continuation
            hi, expect, acc = w.last_seq, self.cursor + 1, []
            for ln in lines:
                if ln.seq > hi and ln.seq != expect:
                    break
                acc.append(ln)
                expect = ln.seq + 1
            if acc:
                acc = acc[: _fits(acc, self.hub.batch_bytes)]
                done = w.finished and acc[-1].seq >= w.last_seq
                return LogBatch(self.run_id, tuple(acc), acc[-1].seq, done)
            if self.cursor >= w.last_seq or w.finished:  # finished: the store has it all
                return None
            await asyncio.sleep(0.02 * (attempt + 1))
        log.warning(
            "log lines up to %s not readable; skipping", w.last_seq, extra={"run_id": self.run_id}
        )
        self.cursor = w.last_seq
        return None

    def _caught_up(self) -> None:
        """Synchronously after a read showed cursor >= the hub's mark: go live (or end)."""
        w = self._watch
        if w is None or self.state != CATCHUP:
            return
        if w.finished:
            done = LogBatch(self.run_id, (), self.cursor, True)
            if self._push is None:
                self._queue.append(done)
                self._applied(done)
            elif self._push(done):
                self._applied(done)
            return
        self.state = LIVE
        w.live[self] = None

    def _applied(self, batch: LogBatch) -> None:
        self.cursor = max(self.cursor, batch.cursor)
        if batch.done:
            self._finish(None)

    def _offer(self, batch: LogBatch) -> None:
        """Called by the hub, synchronously, for live subscribers only."""
        if batch.cursor <= self.cursor and not batch.done:
            return
        if batch.lines and batch.lines[0].seq <= self.cursor:
            batch = LogBatch(
                self.run_id,
                tuple(ln for ln in batch.lines if ln.seq > self.cursor),
                max(batch.cursor, self.cursor),
                batch.done,
            )
        if self._push is not None:
            if not self._push(batch):
                self._fall_behind()
                return
        else:
            if len(self._queue) >= self.hub.buffer:
                self._fall_behind()
                return
            self._queue.append(batch)
            if self._wake is not None:
                self._wake.set()
        self._applied(batch)

    def _fall_behind(self) -> None:
        """Over the buffer: leave the live set; catch up from the store when drained."""
        self.hub.overflows += 1
        self.state = CATCHUP
        if self._watch is not None:
            self._watch.live.pop(self, None)
        if self._push is not None:
            self._start_pump()

    def _finish(self, exc: BaseException | None) -> None:
        if self.state in (DONE, CLOSED):
            return
        self.state = DONE
        self.hub._leave(self)
        if self._wake is not None:
            self._wake.set()
        if self._end is not None:
            self._end(exc)

    def close(self) -> None:
        """The consumer went away: stop everything, quietly."""
        if self.state == CLOSED:
            return
        was_done = self.state == DONE
        self.state = CLOSED
        if not was_done:
            self.hub._leave(self)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        if self._wake is not None:
            self._wake.set()


class _RunWatch:
    __slots__ = (
        "account_id",
        "dirty",
        "final_seen",
        "finished",
        "gap_since",
        "heard_seq",
        "last_seq",
        "live",
        "ready",
        "run_id",
        "subs",
        "task",
    )

    def __init__(self, run_id: int, account_id: int) -> None:
        self.run_id = run_id
        self.account_id = account_id
        self.last_seq = 0
        self.heard_seq = 0
        self.final_seen = False
        self.finished = False
        self.subs: set[LogSubscription] = set()
        self.live: dict[LogSubscription, None] = {}  # ordered: fair, deterministic fan-out
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self.dirty = False
        self.gap_since: float | None = None


class LogHub:
    """See the module docstring. Create with :func:`start_hubs` (one per process)."""

    def __init__(
        self,
        reader: LogReader,
        events: EventListener,
        *,
        buffer: int = 256,
        page: int = 1000,
        batch_bytes: int = 256 * 1024,
        gap_wait: float = 2.0,
    ) -> None:
        self.reader = reader
        self.events = events
        self.buffer = buffer
        self.page = page
        self.batch_bytes = batch_bytes  # websocket clients cap messages (1 MiB is common)
        self.gap_wait = gap_wait
        self._watches: dict[int, _RunWatch] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reads = 0  # table reads done by the hub (not by catching-up subscribers)
        self.shortcuts = 0  # batches handed out straight from this process's ingest
        self.overflows = 0

    def start(self) -> None:
        from server.logs import ingest

        self._unsubscribe = [
            self.events.subscribe("run_logs", self._on_logs),
            self.events.subscribe("run_events", self._on_run_event),
            ingest.on_appended(self._on_appended),
        ]
        self.events.on_reconnect(self._on_reconnect)

    async def stop(self) -> None:
        for u in self._unsubscribe:
            with contextlib.suppress(ValueError):
                u()
        self._unsubscribe = []
        for w in list(self._watches.values()):
            for s in list(w.subs):
                s.close()
        for t in list(self._tasks):
            t.cancel()
        self._watches.clear()

    @property
    def watched_runs(self) -> int:
        return len(self._watches)

    def subscribe(self, info: RunLogInfo, after: int | None) -> LogSubscription:
        """A stream of the run's lines after seq ``after`` (0/None: from the start)."""
        if info.finished:
            return LogSubscription(self, info, after or 0, None)
        w = self._watches.get(info.id)
        if w is None:
            w = _RunWatch(info.id, info.account_id)
            self._watches[info.id] = w
            self._spawn(self._init(w))
        sub = LogSubscription(self, info, after or 0, w)
        w.subs.add(sub)
        return sub

    def _leave(self, sub: LogSubscription) -> None:
        w = sub._watch
        if w is None:
            return
        w.subs.discard(sub)
        w.live.pop(sub, None)
        if not w.subs and self._watches.get(w.run_id) is w:
            del self._watches[w.run_id]
            if w.task is not None:
                w.task.cancel()

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task  # type: ignore[return-value]

    async def _init(self, w: _RunWatch) -> None:
        delay = 0.1
        while True:
            try:
                info = await self.reader.info(w.run_id, w.account_id)
                break
            except Exception as exc:
                log.warning("log watch init failed: %s", exc, extra={"run_id": w.run_id})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if info is None:  # deleted meanwhile: end everyone
            w.last_seq, w.finished = 2**31, True
        else:
            w.last_seq = info.log_seq
            if info.finished:
                # every line up to log_seq is stored and no more can come
                w.final_seen = w.finished = True
        w.ready.set_result(None)
        if not w.finished and (w.heard_seq > w.last_seq or w.final_seen):
            self._kick(w)

    # -- notifications -------------------------------------------------------
    def _on_logs(self, payload: str) -> None:
        run_s, _, seq_s = payload.partition(":")
        try:
            w = self._watches.get(int(run_s))
            if w is None:
                return
            seq = int(seq_s)
        except ValueError:
            return
        if seq > w.heard_seq:
            w.heard_seq = seq
        if w.ready.done() and seq > w.last_seq and not w.finished:
            self._kick(w)

    def _on_run_event(self, payload: str) -> None:
        if not self._watches:
            return
        try:
            ev = RunEvent.parse(payload)
        except (ValueError, TypeError, KeyError):
            return
        w = self._watches.get(ev.run)
        if w is None or ev.status < 10 or w.final_seen:
            return
        w.final_seen = True
        if w.ready.done() and not w.finished:
            self._kick(w)

    async def _on_reconnect(self) -> None:
        for w in list(self._watches.values()):
            if not w.ready.done() or w.finished:
                continue
            try:
                info = await self.reader.info(w.run_id, w.account_id)
            except Exception:
                log.exception("re-reading a watched run failed")
                continue
            if info is None or info.finished:
                w.final_seen = True
            if info is not None:
                w.heard_seq = max(w.heard_seq, info.log_seq)
            self._kick(w)

    def _kick(self, w: _RunWatch) -> None:
        if w.task is not None and not w.task.done():
            w.dirty = True
            return
        if self._watches.get(w.run_id) is not w:
            return
        w.task = self._spawn(self._read(w))

    async def _read(self, w: _RunWatch) -> None:
        loop = asyncio.get_running_loop()
        while not w.finished:
            w.dirty = False
            final = w.final_seen
            try:
                lines = await self.reader.after(w.run_id, w.account_id, w.last_seq, self.page)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reading new log lines failed: %s", exc, extra={"run_id": w.run_id})
                loop.call_later(1.0, self._kick, w)
                return
            self.reads += 1
            lines = [ln for ln in lines if ln.seq > w.last_seq]  # the shortcut may be ahead
            expect, acc = w.last_seq + 1, []
            for ln in lines:
                if ln.seq != expect:
                    break
                acc.append(ln)
                expect += 1
            hole = len(acc) < len(lines)
            if hole:
                now = loop.time()
                if w.gap_since is None:
                    w.gap_since = now
                if final or now - w.gap_since >= self.gap_wait:
                    acc, hole = list(lines), False
                    log.warning("accepting a hole in log seqs", extra={"run_id": w.run_id})
            if not hole:
                w.gap_since = None
            full = len(lines) >= self.page
            done = final and not full and not hole
            if acc or done:
                self._publish(w, acc, done)
            if done:
                return
            if hole and not acc:
                loop.call_later(0.05, self._kick, w)
                return
            if not (full or w.dirty or hole):
                return


    def _publish(self, w: _RunWatch, lines: list[LogLine], done: bool) -> None:
        """Hand ``lines`` (continuing ``last_seq``) to every live subscriber, in batches
        bounded in bytes; the last one carries ``done``."""
        while True:
            n = _fits(lines, self.batch_bytes)
            part, lines = lines[:n], lines[n:]
            last = done and not lines
            batch = LogBatch(w.run_id, tuple(part), part[-1].seq if part else w.last_seq, last)
            w.last_seq = batch.cursor
            if last:
                w.finished = True
            for sub in list(w.live):
                try:
                    sub._offer(batch)
                except Exception as exc:  # one broken consumer must not starve the others
                    log.exception("handing a log batch to a subscriber failed")
                    sub._finish(exc)
            if last or not lines:
                return

    def _on_appended(self, run_id: int, account_id: int, rows: list[tuple[Any, ...]]) -> None:
        """The same-process shortcut (see the module docstring)."""
        w = self._watches.get(run_id)
        if w is None or w.account_id != account_id or not w.ready.done() or w.finished:
            return
        if w.task is not None and not w.task.done():
            return  # a read is in flight: it (or the NOTIFY after it) covers these lines
        expect, acc = w.last_seq + 1, []
        for r in sorted(rows):
            if r[0] < expect:
                continue
            if r[0] != expect:
                break
            acc.append(LogLine(*r))
            expect += 1
        if not acc:
            return
        self.shortcuts += 1
        w.heard_seq = max(w.heard_seq, acc[-1].seq)
        self._publish(w, acc, False)


# -- events (runs, IDE sessions) ----------------------------------------------


class EventSubscription(Generic[T]):
    """One subscriber's stream of loaded objects for one key (pull or push)."""

    __slots__ = ("_end", "_push", "_queue", "_wake", "hub", "key", "load", "state")
    resumable = False

    def __init__(self, hub: EventHub[Any], key: Hashable, load: Callable[[Any], Awaitable[T]]):
        self.hub = hub
        self.key = key
        self.load = load
        self.state = LIVE
        self._queue: deque[T] = deque()
        self._wake: asyncio.Event | None = None
        self._push: Push | None = None
        self._end: End | None = None

    def __aiter__(self) -> EventSubscription[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            if self._queue:
                return self._queue.popleft()
            if self.state != LIVE:
                raise StopAsyncIteration
            if self._wake is None:
                self._wake = asyncio.Event()
            self._wake.clear()
            await self._wake.wait()

    def attach(self, push: Push, writable: Writable, end: End) -> None:
        self._push, self._end = push, end

    def _offer(self, item: T) -> None:
        if self._push is not None:
            self._push(item)  # a refusal is the transport's to handle (it closes)
            return
        if len(self._queue) >= self.hub.buffer:
            self._queue.popleft()  # latest state wins
            self.hub.overflows += 1
        self._queue.append(item)
        if self._wake is not None:
            self._wake.set()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.hub._leave(self)
        if self._wake is not None:
            self._wake.set()


class EventHub(Generic[E]):
    """Fan-out of one NOTIFY channel by key; see the module docstring."""

    def __init__(
        self,
        events: EventListener,
        channel: str,
        parse: Callable[[str], E | None],
        keys: Callable[[E], Iterable[Hashable]],
        *,
        buffer: int = 64,
    ) -> None:
        self.events = events
        self.channel = channel
        self.parse = parse
        self.keys = keys
        self.buffer = buffer
        self._subs: dict[Hashable, dict[EventSubscription[Any], None]] = defaultdict(dict)
        self._resync: dict[Hashable, Callable[[], Awaitable[list[E]]]] = {}
        self._queue: asyncio.Queue[E] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.overflows = 0
        self.loads = 0

    def start(self) -> None:
        self._unsubscribe = self.events.subscribe(self.channel, self._on_notify)
        self.events.on_reconnect(self._on_reconnect)
        self._task = asyncio.create_task(self._consume(), name=f"event-hub-{self.channel}")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            with contextlib.suppress(ValueError):
                self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for subs in list(self._subs.values()):
            for s in list(subs):
                s.close()

    def subscribe(
        self,
        key: Hashable,
        load: Callable[[E], Awaitable[T | None]],
        resync: Callable[[], Awaitable[list[E]]] | None = None,
    ) -> EventSubscription[T]:
        """Objects ``load(event)`` for every event under ``key`` (None: skip the event)."""
        sub: EventSubscription[T] = EventSubscription(self, key, load)  # type: ignore[arg-type]
        self._subs[key][sub] = None
        if resync is not None:
            self._resync.setdefault(key, resync)
        return sub

    def publish(self, event: E) -> None:
        """Process ``event`` as if it had been notified (resyncs, tests)."""
        self._queue.put_nowait(event)

    def _leave(self, sub: EventSubscription[Any]) -> None:
        subs = self._subs.get(sub.key)
        if subs is None:
            return
        subs.pop(sub, None)
        if not subs:
            del self._subs[sub.key]
            self._resync.pop(sub.key, None)

    def _on_notify(self, payload: str) -> None:
        if not self._subs:
            return
        try:
            event = self.parse(payload)
        except (ValueError, TypeError, KeyError, json.JSONDecodeError):
            return
        if event is not None and any(k in self._subs for k in self.keys(event)):
            self._queue.put_nowait(event)

    async def _on_reconnect(self) -> None:
        for key, resync in list(self._resync.items()):
            if key not in self._subs:
                continue
            try:
                for event in await resync():
                    self._queue.put_nowait(event)
            except Exception:
                log.exception("event resync failed", extra={"key": str(key)})

    async def _consume(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._deliver(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event delivery failed")

    async def _deliver(self, event: E) -> None:
        targets: list[EventSubscription[Any]] = []
        for k in self.keys(event):
            targets.extend(self._subs.get(k, ()))
        if not targets:
            return
        by_load: dict[Callable[[Any], Awaitable[Any]], list[EventSubscription[Any]]] = {}
        for s in targets:
            by_load.setdefault(s.load, []).append(s)
        loads = list(by_load)
        results = await asyncio.gather(*(ld(event) for ld in loads), return_exceptions=True)
        self.loads += len(loads)
        for ld, obj in zip(loads, results, strict=True):
            if isinstance(obj, BaseException):
                log.warning("event load failed: %s", obj)
                continue
            if obj is None:
                continue
            for s in by_load[ld]:
                if s.state == LIVE:
                    try:
                        s._offer(obj)
                    except Exception as exc:
                        log.exception("handing an event to a subscriber failed")
                        if s._end is not None:
                            s._end(exc)
                        s.close()


# -- the process's hubs ---------------------------------------------------------


def _parse_run_event(payload: str) -> RunEvent | None:
    ev = RunEvent.parse(payload)
    return None if ev.kind == "heartbeat" else ev


def run_event_keys(ev: RunEvent) -> tuple[Hashable, ...]:
    return (
        ("account", ev.account),
        ("run", ev.run),
        ("job", ev.job),
        ("environment", ev.environment),
        ("project", ev.project),
    )


@dataclass(frozen=True, slots=True)
class IdeEvent:
    session: int
    user: int
    account: int
    state: str


def _parse_ide_event(payload: str) -> IdeEvent:
    d = json.loads(payload)
    return IdeEvent(int(d["session"]), int(d["user"]), int(d["account"]), str(d["state"]))


@dataclass
class Hubs:
    logs: LogHub
    runs: EventHub[RunEvent]
    ide: EventHub[IdeEvent]
    events: EventListener
    own_events: bool

    async def stop(self) -> None:
        await self.logs.stop()
        await self.runs.stop()
        await self.ide.stop()
        if self.own_events:
            await self.events.stop()


_LOCK_KEY = "log_hubs_lock"


async def hubs(platform: Any) -> Hubs:
    """The process's hubs, started on first use on the shared EventListener."""
    h = platform.services.get("log_hubs")
    if h is not None:
        return h
    lock = platform.services.setdefault(_LOCK_KEY, asyncio.Lock())
    async with lock:
        h = platform.services.get("log_hubs")
        if h is not None:
            return h
        events = platform.services.get("events")
        own = events is None
        if own:
            events = EventListener(platform.db)
            await events.start()
            platform.services["events"] = events
        h = Hubs(
            logs=LogHub(log_reader(platform), events),
            runs=EventHub(events, "run_events", _parse_run_event, run_event_keys),
            ide=EventHub(events, "ide_events", _parse_ide_event, lambda e: (("ide", e.session),)),
            events=events,
            own_events=own,
        )
        h.logs.start()
        h.runs.start()
        h.ide.start()
        platform.services["log_hubs"] = h
        return h


async def stop_hubs(platform: Any) -> None:
    h = platform.services.pop("log_hubs", None)
    if h is not None:
        await h.stop()
        if h.own_events and platform.services.get("events") is h.events:
            platform.services.pop("events", None)
