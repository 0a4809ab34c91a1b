"""``kiln worker run RUN_ID``: execute one run and report everything over the internal API.

Flow: fetch the spec → ``start`` (starting → running) → heartbeats in the
background (their answer carries cancellation) → step "Clone" (materialize
the project, record the sha) → "Install packages" when the project has
``packages.yml``/``dependencies.yml`` → one step per command, named
``Invoke dbt with `<command>``` → after each step upload what it wrote under
``target/`` → flush logs → ``finish``.

Rules:

* A failing ``dbt``/``retry`` step stops the rest and the run ends error with
  that step's message; ``freshness`` and ``docs`` steps may fail without
  failing the run.
* Cancel (heartbeat answer, SIGTERM) or the run's timeout: dbt gets SIGINT
  (it cancels its open queries), SIGKILL after a short grace, logs are
  flushed, and the run ends cancelled with the reason (a timeout says it
  timed out). The monitor kills the worker if this takes longer than 10 s.
* Secrets never reach a stored line: every line is masked here (and again
  by the API). dbt does not get the run token in its environment.
* The workspace (project copy, ``profiles.yml``) is a temporary directory
  removed at the end; ``KILN_WORKER_KEEP=1`` keeps the project copy (never
  the profiles) for debugging and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from server.runs.masking import Masker
from server.worker import dbt
from server.worker.client import ApiError, InternalClient, RunGone
from server.worker.logship import LogShipper
from server.worker.project import CheckoutError, materialize

log = logging.getLogger("kiln.worker")

SIGINT_GRACE = 3.0  # dbt's own cancel of running queries, before SIGKILL
UPLOAD_CONCURRENCY = 8
NON_FATAL_KINDS = ("freshness", "docs")


def step_name(command: str) -> str:
    return f"Invoke dbt with `{command}`"


class Cancelled(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Worker:
    def __init__(self, client: InternalClient, spec: dict[str, Any]) -> None:
        self.client = client
        self.spec = spec
        self.run_id = int(spec["run"]["id"])
        secrets = [spec["env"][n] for n in spec.get("secret_env_names", []) if n in spec["env"]]
        secrets += [str(v) for v in (spec["credentials"].get("secrets") or {}).values() if v]
        self.mask = Masker(secrets)
        self.shipper = LogShipper(client.logs)
        self.cancel = asyncio.Event()
        self.cancel_reason = "Cancelled"
        self.gone = False
        self.step = 0
        self.workspace = Path(
            tempfile.mkdtemp(
                prefix=f"kiln-run-{self.run_id}-", dir=os.environ.get("KILN_WORKER_WORKDIR")
            )
        )
        self.profiles_dir: Path | None = None

    # -- reporting -------------------------------------------------------------

    def line(self, message: str, level: str = "info", **extra: Any) -> None:
        self.shipper.put_nowait(
            {
                "ts": dbt.now_iso(),
                "level": level,
                "message": self.mask(message),
                "step": self.step or None,
                "eventName": extra.get("eventName"),
                "nodeId": extra.get("nodeId"),
            }
        )

    def request_cancel(self, reason: str) -> None:
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()

    async def heartbeats(self, interval: float) -> None:
        """Heartbeat every ``interval``; each call long-polls for a cancel meanwhile."""
        while True:
            t0 = time.monotonic()
            try:
                answer = await self.client.heartbeat(wait=interval)
            except RunGone:
                self.gone = True
                self.request_cancel("The run ended on the server")
                return
            except (ApiError, Exception) as exc:  # the monitor judges lost heartbeats
                log.warning("heartbeat failed: %s", exc)
                answer = {}
            if answer.get("cancel"):  # keep beating while dbt stops and logs flush
                self.request_cancel(answer.get("reason") or "Cancelled")
            if not answer.get("waited"):
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - t0)))

    async def deadline(self, seconds: int) -> None:
        await asyncio.sleep(seconds)
        self.request_cancel(f"Timed out after {seconds} seconds (the job's timeout)")

    # -- steps -----------------------------------------------------------------

    async def set_step(self, index: int, status: int, message: str | None = None) -> None:
        await self.client.steps(
            [{**self.plan[index - 1], "index": index, "status": status, "message": message}]
        )

    async def run_dbt(self, argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
        """Run one dbt invocation, shipping its lines; (exit code, failure message)."""
        outcome = dbt.StepOutcome()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=32 * 1024 * 1024,
        )
        assert proc.stdout is not None

        async def pump() -> None:
            assert proc.stdout is not None
            while raw := await proc.stdout.readline():
                parsed = dbt.parse_line(raw.decode(errors="replace"))
                parsed["message"] = self.mask(parsed["message"])
                parsed["step"] = self.step
                outcome.feed(parsed)
                await self.shipper.put(parsed)

        pumping = asyncio.create_task(pump())
        cancel_wait = asyncio.create_task(self.cancel.wait())
        try:
            await asyncio.wait({pumping, cancel_wait}, return_when=asyncio.FIRST_COMPLETED)
            if self.cancel.is_set() and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(proc.wait(), SIGINT_GRACE)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pumping, 5)
                await proc.wait()
                raise Cancelled(self.cancel_reason)
            await pumping
            rc = await proc.wait()
        finally:
            cancel_wait.cancel()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        return rc, outcome.message(rc)

    async def upload_artifacts(self, target_dir: Path, since: float) -> None:
        files = dbt.artifact_files(target_dir, since)
        sem = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def one(rel: str, path: Path) -> None:
            async with sem:
                await self.client.upload(self.step, rel, path)

        await asyncio.gather(*(one(rel, p) for rel, p in files))

    async def execute(self) -> tuple[str, str | None]:
        """Run every step; return the final (status, message)."""
        spec = self.spec
        project_root = self.workspace / "project"
        self.plan: list[dict[str, Any]] = [{"name": "Clone", "kind": "clone", "command": ""}]
        self.step = 1
        await self.set_step(1, 3)
        try:
            project_dir, sha, branch = await materialize(spec["project"], project_root, self.line)
        except (CheckoutError, OSError) as exc:
            self.line(str(exc), "error")
            await self.set_step(1, 20, str(exc))
            return "error", f"Clone failed: {exc}"
        if sha or branch:
            await self.client.checkout(sha, branch)

        entries: list[dict[str, Any]] = []
        if (project_dir / "packages.yml").is_file() or (project_dir / "dependencies.yml").is_file():
            entries.append({"command": "dbt deps", "kind": "deps", "name": "Install packages"})
        for e in spec["steps"]:
            entries.append({**e, "name": step_name(e["command"])})
        self.plan += [
            {"name": e["name"], "kind": e["kind"], "command": e["command"]} for e in entries
        ]
        # one call: Clone done, the rest of the plan queued (a run with no commands still
        # reports its Clone step)
        await self.client.steps(
            [{**self.plan[0], "index": 1, "status": 10}]
            + [{**p, "index": i + 1, "status": 1} for i, p in enumerate(self.plan) if i > 0]
        )

        self.profiles_dir = dbt.write_profiles(spec, project_dir, base=self.workspace)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KILN_RUN_TOKEN", "KILN_API_URL", "KILN_RUN_ID")
        }
        env.update(spec.get("env") or {})
        env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
        env.pop("DBT_PROFILES_DIR", None)
        target = spec["target"]["name"] or "default"
        target_dir = project_dir / "target"

        for i, entry in enumerate(entries, start=2):
            if self.cancel.is_set():
                raise Cancelled(self.cancel_reason)
            self.step = i
            await self.set_step(i, 3)
            started = time.time() - 1.0
            command = entry["command"]
            if entry["kind"] == "retry":
                command = await self.prepare_retry(entry, target_dir)
            argv = dbt.command_argv(
                command,
                profiles_dir=self.profiles_dir,
                project_dir=project_dir,
                target=target,
                vars=spec["target"].get("vars"),
            )
            try:
                rc, message = await self.run_dbt(argv, project_dir, env)
            finally:
                with contextlib.suppress(Exception):
                    await self.upload_artifacts(target_dir, started)
            if rc == 0:
                await self.set_step(i, 10)
                continue
            await self.set_step(i, 20, message)
            if entry["kind"] in NON_FATAL_KINDS:
                self.line(f"{entry['name']} failed; a {entry['kind']} step does not fail the run")
                continue
            return "error", message
        return "success", None

    async def prepare_retry(self, entry: dict[str, Any], target_dir: Path) -> str:
        """Put the previous run's run_results.json in target/ so ``dbt retry`` resumes it."""
        prev_step = int(entry.get("previous_step") or 0)
        data = (
            await self.client.previous_artifact(prev_step, "run_results.json")
            if prev_step
            else None
        )
        if data is None:
            fallback = entry.get("retry_of") or "dbt build"
            self.line(
                f"The previous run has no run_results.json for step {prev_step}; "
                f"running `{fallback}` instead of `dbt retry`",
                "warn",
            )
            return fallback
        target_dir.mkdir(parents=True, exist_ok=True)
        (target_dir / "run_results.json").write_bytes(data)
        self.line(f"Retrying from the results of run {self.spec['run']['previous_run_id']}")
        return entry["command"]

    def cleanup(self) -> None:
        if self.profiles_dir is not None:
            shutil.rmtree(self.profiles_dir, ignore_errors=True)
        if os.environ.get("KILN_WORKER_KEEP") == "1":
            # keep the project for inspection, never the profiles
            return
        shutil.rmtree(self.workspace, ignore_errors=True)


async def run_worker(api_url: str, run_id: int, token: str) -> int:
    """The worker's whole life; returns the process exit code."""
    async with InternalClient(api_url, run_id, token) as client:
        try:
            spec = await client.spec()
            started = await client.start()
        except RunGone:
            log.warning("run %s is no longer ours; exiting", run_id)
            return 3
        except ApiError as exc:  # exit non-zero: the monitor fails the run with the exit code
            log.error("cannot reach the API at %s: %s", api_url, exc)
            return 5
        worker = Worker(client, spec)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(
            signal.SIGTERM, worker.request_cancel, "Worker terminated (SIGTERM)"
        )
        worker.shipper.start()
        background = [
            asyncio.create_task(worker.heartbeats(float(spec.get("heartbeat_interval") or 5.0)))
        ]
        timeout = int(spec["run"].get("timeout_seconds") or 0)
        if timeout > 0:
            background.append(asyncio.create_task(worker.deadline(timeout)))
        status, message = "error", "worker did not finish"
        try:
            if started.get("cancel"):
                raise Cancelled(started.get("reason") or "Cancelled")
            status, message = await worker.execute()
        except Cancelled as exc:
            worker.line(f"Run cancelled: {exc.reason}", "warn")
            status, message = "cancelled", exc.reason
        except RunGone:
            worker.gone = True
        except Exception as exc:
            log.exception("worker failed")
            with contextlib.suppress(Exception):
                worker.line("".join(traceback.format_exception(exc)), "error")
            status, message = "error", f"Worker error: {type(exc).__name__}: {exc}"
        finally:
            for t in background:
                t.cancel()
            worker.cleanup()
        with contextlib.suppress(Exception):
            await worker.shipper.close()
        if worker.gone:
            return 3
        try:
            await client.finish(status, worker.mask(message) if message else None)
        except RunGone:
            return 3
        except ApiError as exc:  # the API stayed unreachable: the monitor will end the run
            log.error("could not report the end of the run (%s): %s", status, exc)
            return 4
        own = resource.getrusage(resource.RUSAGE_SELF)
        log.info(
            "finished %s: %d log lines in %d batches, worker CPU %.2f s (dbt not included)",
            status,
            worker.shipper.sent,
            worker.shipper.batches,
            own.ru_utime + own.ru_stime,
        )
        return 0


def main(run_id: int) -> int:
    """Entry point of ``kiln worker run``: reads KILN_API_URL and KILN_RUN_TOKEN."""
    logging.basicConfig(
        level=os.environ.get("KILN_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s run_id=" + str(run_id),
        stream=sys.stderr,
    )
    api_url = os.environ.get("KILN_API_URL")
    token = os.environ.pop("KILN_RUN_TOKEN", None)
    env_run = os.environ.get("KILN_RUN_ID")
    if not api_url or not token:
        print("kiln worker: KILN_API_URL and KILN_RUN_TOKEN must be set", file=sys.stderr)
        return 2
    if env_run and env_run != str(run_id):
        print(f"kiln worker: KILN_RUN_ID={env_run} does not match {run_id}", file=sys.stderr)
        return 2
    try:
        import uvloop

        return uvloop.run(run_worker(api_url, run_id, token))
    except ImportError:
        return asyncio.run(run_worker(api_url, run_id, token))
