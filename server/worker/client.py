"""HTTP client of the internal API (``/internal/runs/{id}/...``), with idempotent retries.

Every call the worker makes is safe to repeat (steps upsert by index, logs
are keyed by seq, artifacts by (step, path), start/finish are conditional
transitions), so network errors and 5xx answers are retried with backoff
until ``retry_for`` seconds have passed. A 404 means the token is no longer
valid for the run (it ended, or was never ours): :class:`RunGone`, and the
worker stops. A certificate error is not retried.

``KILN_API_CA_FILE`` (set by the local launcher when ``kiln up`` serves https
with its own certificate) is trusted for calls to the API, on top of the
system's CAs; git and dbt keep the system's trust as it is.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp

log = logging.getLogger("kiln.worker.client")


class RunGone(Exception):
    """The API no longer accepts this run's token (the run has ended)."""


class ApiError(Exception):
    """A call failed for good (4xx other than 404, or retries exhausted)."""


START_RETRY = 60.0  # before the run started, give up sooner: the monitor is waiting
RETRYABLE = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


class InternalClient:
    def __init__(self, api_url: str, run_id: int, token: str, *, retry_for: float = 300.0) -> None:
        self.base = f"{api_url.rstrip('/')}/internal/runs/{run_id}"
        self.run_id = run_id
        self.retry_for = retry_for
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> InternalClient:
        connector = None
        ca = os.environ.get("KILN_API_CA_FILE")
        if ca:  # the API's own certificate (kiln up --tls-cert): trusted for the API only
            ctx = ssl.create_default_context()
            ctx.load_verify_locations(cafile=ca)
            connector = aiohttp.TCPConnector(ssl=ctx)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data_path: Path | None = None,
        raw: bool = False,
        retry_for: float | None = None,
    ) -> Any:
        assert self._session is not None
        deadline = time.monotonic() + (self.retry_for if retry_for is None else retry_for)
        delay = 0.1
        while True:
            try:
                if data_path is not None:
                    with data_path.open("rb") as f:
                        resp_ctx = self._session.request(method, self.base + path, data=f)
                        async with resp_ctx as resp:
                            return await self._result(resp, raw)
                async with self._session.request(method, self.base + path, json=json) as resp:
                    return await self._result(resp, raw)
            except _Retry as exc:
                err: BaseException = exc
            except (aiohttp.ClientSSLError, aiohttp.InvalidURL) as exc:
                # a certificate or URL problem does not heal by waiting
                raise ApiError(f"{method} {path}: {exc}") from exc
            except RETRYABLE as exc:
                err = exc
            if time.monotonic() + delay > deadline:
                raise ApiError(f"{method} {path}: {err}") from err
            log.warning("retrying %s %s after %s", method, path, err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    @staticmethod
    async def _result(resp: aiohttp.ClientResponse, raw: bool) -> Any:
        if resp.status == 404:
            raise RunGone(f"{resp.method} {resp.url.path}: 404")
        if resp.status >= 500 or resp.status == 429:
            raise _Retry(f"HTTP {resp.status}")
        if resp.status >= 400:
            raise ApiError(f"{resp.method} {resp.url.path}: HTTP {resp.status} {await resp.text()}")
        return await resp.read() if raw else await resp.json()

    async def spec(self) -> dict[str, Any]:
        return await self._call("GET", "/spec", retry_for=START_RETRY)

    async def start(self) -> dict[str, Any]:
        return await self._call("POST", "/start", json={}, retry_for=START_RETRY)

    async def heartbeat(self, wait: float = 0.0) -> dict[str, Any]:
        """One heartbeat; the API may hold it up to ``wait`` s and answer early on cancel."""
        return await self._call("POST", f"/heartbeat?wait={wait:g}", json={}, retry_for=0)

    async def checkout(self, git_sha: str | None, git_branch: str | None) -> None:
        await self._call("POST", "/checkout", json={"git_sha": git_sha, "git_branch": git_branch})

    async def steps(self, steps: list[dict[str, Any]]) -> None:
        await self._call("POST", "/steps", json={"steps": steps})

    async def logs(self, lines: list[dict[str, Any]]) -> None:
        await self._call("POST", "/logs", json={"lines": lines})

    async def upload(self, step: int, rel_path: str, file: Path) -> dict[str, Any]:
        return await self._call("PUT", f"/artifacts/{step}/{rel_path}", data_path=file)

    async def previous_artifact(self, step: int, rel_path: str) -> bytes | None:
        try:
            return await self._call("GET", f"/previous-artifacts/{step}/{rel_path}", raw=True)
        except RunGone:
            return None

    async def finish(self, status: str, message: str | None) -> dict[str, Any]:
        return await self._call("POST", "/finish", json={"status": status, "message": message})


class _Retry(Exception):
    pass
