"""``kiln gateway --workers N``: N gateway processes sharing one port.

One Python process executes GraphQL on one core. With ``--workers N`` the
process the user started becomes a small supervisor: it starts N ordinary
``kiln gateway`` processes that all listen on the same address with
SO_REUSEPORT (the kernel spreads new connections over them), prints one ready
line once every one of them is ready, and then:

* on SIGINT or SIGTERM, sends SIGTERM to every worker and waits for them, so
  each drains as a single gateway would;
* if a worker exits on its own, stops the others and exits with that worker's
  code: a process manager (systemd, Kubernetes) restarts the whole gateway,
  rather than one silently running at a fraction of its size.

Each worker is a complete gateway (its own pools, LISTEN connection and log
hub); gateways already run side by side as Kubernetes replicas, so nothing
needs to be shared in memory. Workers need an external database: the
embedded PostgreSQL belongs to the one process that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from server.config import Settings

READY = "Kiln is ready at "


def worker_args(settings: Settings) -> list[str]:
    """The command line of one worker: the supervisor's settings, pinned, on a shared port."""
    args = ["gateway", "--reuse-port", "--host", settings.host, "--port", str(settings.port)]
    args += ["--data-dir", str(settings.data_dir), "--database-url", str(settings.database_url)]
    if settings.tls_cert:
        args += ["--tls-cert", str(settings.tls_cert), "--tls-key", str(settings.tls_key)]
    return args


async def supervise(settings: Settings, workers: int) -> int:
    """Run ``workers`` gateways on ``settings.port`` until a signal or a worker's exit."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    args = worker_args(settings)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", *args, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(workers)
    ]
    ready: list[str] = []

    async def relay(proc: asyncio.subprocess.Process) -> None:
        """Forward a worker's output; count its ready line instead of repeating it."""
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace")
            if line.startswith(READY):
                ready.append(line)
                if len(ready) == workers:  # the ready line stays as tools parse it
                    print(f"{workers} gateway processes share the port", flush=True)
                    print(line.rstrip(), flush=True)
            else:
                sys.stdout.write(line)
                sys.stdout.flush()

    relays = [asyncio.ensure_future(relay(p)) for p in procs]
    exits = [asyncio.ensure_future(p.wait()) for p in procs]
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if stopping not in done:  # a worker ended by itself: end the others too
            code = next(t.result() for t in exits if t.done()) or 1
            print(f"kiln gateway: a worker exited with code {code}; stopping", file=sys.stderr)
    finally:
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*exits)
        await asyncio.gather(*relays, return_exceptions=True)
        stopping.cancel()
    if code == 0 and any(c not in (0, -signal.SIGTERM) for c in codes):
        code = 1
    return code
