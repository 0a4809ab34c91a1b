"""Run ``kiln`` commands as real subprocesses in tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def kiln_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env.update(extra)
    return env


def kiln_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", *args]


def run_kiln(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        kiln_cmd(*args),
        env=env or kiln_env(),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


class KilnProcess:
    """A long-running ``kiln up``/``gateway``; waits for the ready line."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            kiln_cmd(*args),
            env=env or kiln_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._ready = threading.Event()
        self.url: str | None = None
        threading.Thread(
            target=self._pump, args=(self.proc.stdout, self.stdout, True), daemon=True
        ).start()
        threading.Thread(
            target=self._pump, args=(self.proc.stderr, self.stderr, False), daemon=True
        ).start()

    def _pump(self, stream, sink: list[str], watch: bool) -> None:
        for line in stream:
            sink.append(line)
            if watch and line.startswith("Kiln is ready at "):
                self.url = line.strip().rsplit(" ", 1)[1]
                self._ready.set()

    def wait_ready(self, timeout: float = 90) -> float:
        start = time.monotonic()
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() - start > timeout:
                raise AssertionError(
                    f"kiln did not become ready (exit {self.proc.poll()}):\n"
                    + "".join(self.stdout)
                    + "".join(self.stderr)
                )
        return time.monotonic() - start

    def wait_ready_line(self, text: str, timeout: float = 90) -> None:
        """Wait for a stdout line containing ``text`` (processes other than `kiln up`)."""
        start = time.monotonic()
        while not any(text in line for line in self.stdout):
            if self.proc.poll() is not None or time.monotonic() - start > timeout:
                raise AssertionError("".join(self.stdout) + "".join(self.stderr))
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)
