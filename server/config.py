"""Kiln's configuration: one frozen object read from ``KILN_*`` variables.

Every process (``kiln up``, ``gateway``, ``scheduler``, ``worker``, ``develop``)
reads the same settings, so two processes on one data dir agree on the
database, the object store and the secret key. CLI options override the
environment. A missing or invalid setting raises :class:`ConfigError` whose
message is one line that names the setting; the CLI prints it and exits 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8580


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it."""


@dataclass(frozen=True, slots=True)
class S3Settings:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None


@dataclass(frozen=True, slots=True)
class KubeSettings:
    namespace: str = "kiln"
    kubeconfig: str | None = None  # path; None = in-cluster config
    context: str | None = None
    image: str = "ghcr.io/kiln-platform/kiln:latest"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str = "kiln-runner"
    run_cpu_request: str = "250m"
    run_memory_request: str = "512Mi"
    run_cpu_limit: str | None = None
    run_memory_limit: str = "2Gi"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations_json: str = ""  # JSON list of toleration objects
    extra_env: Mapping[str, str] = field(default_factory=dict)
    workspace_storage_class: str | None = None
    workspace_size: str = "2Gi"
    image_pull_grace_seconds: int = 120
    unschedulable_grace_seconds: int = 300
    watch_restart_seconds: int = 300


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str | None  # None: embedded PostgreSQL under data_dir/pg
    object_store: str  # file:///abs/path or s3://bucket/prefix
    s3: S3Settings | None
    secret_keys: tuple[str, ...]  # Fernet keys, newest first; () until resolved
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    public_url: str | None = None  # how workers and develop servers reach the API
    launcher: str = "local"  # local | kubernetes
    spawner: str = "local"  # local | kubernetes
    run_slots: int = 5
    heartbeat_interval: float = 5.0
    log_archive_after: float = 600.0
    run_retention_days: int = 90
    ide_idle_timeout: float = 3600.0
    rate_limit_per_minute: int = 5000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_level: str = "INFO"
    kube: KubeSettings = field(default_factory=KubeSettings)

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def api_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_cert else "http"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{scheme}://{host}:{self.port}"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(name: str, value: str) -> float:
    """``"600"``, ``"10m"``, ``"1h"`` → seconds."""
    m = _DURATION.match(value)
    if not m:
        raise ConfigError(f"{name}: expected a duration like 600, 10m or 1h, got {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _int(name: str, value: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if not lo <= n <= hi:
        raise ConfigError(f"{name}: must be between {lo} and {hi}, got {n}")
    return n


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
    return value


def _mapping(name: str, value: str) -> dict[str, str]:
    """``"a=1,b=2"`` → {"a": "1", "b": "2"}."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{name}: expected key=value pairs separated by commas, got {item!r}")
        out[key.strip()] = val.strip()
    return out


def check_database_url(url: str, name: str = "KILN_DATABASE_URL") -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "asyncpg"):
        raise ConfigError(
            f"{name}: expected a postgres://user:password@host:port/database URL, got {url!r}"
        )
    if not parts.path.strip("/") and "host=" not in parts.query:
        raise ConfigError(f"{name}: the URL names no database: {url!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(f"{name}: invalid port in {url!r}") from None
    return url


def _object_store(
    value: str, data_dir: Path, env: Mapping[str, str]
) -> tuple[str, S3Settings | None]:
    if not value:
        return (data_dir / "objects").as_uri(), None
    parts = urlsplit(value)
    if parts.scheme == "file":
        if not parts.path.startswith("/"):
            raise ConfigError(
                f"KILN_OBJECT_STORE: file:// URL needs an absolute path, got {value!r}"
            )
        return value, None
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket or ""):
            raise ConfigError(f"KILN_OBJECT_STORE: invalid S3 bucket name in {value!r}")
        endpoint = env.get("KILN_S3_ENDPOINT_URL") or None
        if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
            raise ConfigError(f"KILN_S3_ENDPOINT_URL: expected an http(s) URL, got {endpoint!r}")
        return value, S3Settings(
            bucket=bucket,
            prefix=parts.path.strip("/"),
            endpoint_url=endpoint,
            region=env.get("KILN_S3_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            access_key_id=env.get("KILN_S3_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("KILN_S3_SECRET_ACCESS_KEY") or None,
        )
    raise ConfigError(
        f"KILN_OBJECT_STORE: expected file:///path or s3://bucket/prefix, got {value!r}"
    )


def _kube(env: Mapping[str, str]) -> KubeSettings:
    d = KubeSettings()
    g = env.get
    secrets = tuple(s for s in (g("KILN_K8S_IMAGE_PULL_SECRETS") or "").split(",") if s.strip())
    return KubeSettings(
        namespace=g("KILN_K8S_NAMESPACE") or d.namespace,
        kubeconfig=g("KILN_K8S_KUBECONFIG") or None,
        context=g("KILN_K8S_CONTEXT") or None,
        image=g("KILN_K8S_IMAGE") or d.image,
        image_pull_policy=_choice(
            "KILN_K8S_IMAGE_PULL_POLICY",
            g("KILN_K8S_IMAGE_PULL_POLICY") or d.image_pull_policy,
            ("Always", "IfNotPresent", "Never"),
        ),
        image_pull_secrets=tuple(s.strip() for s in secrets),
        service_account=g("KILN_K8S_SERVICE_ACCOUNT") or d.service_account,
        run_cpu_request=g("KILN_K8S_RUN_CPU_REQUEST") or d.run_cpu_request,
        run_memory_request=g("KILN_K8S_RUN_MEMORY_REQUEST") or d.run_memory_request,
        run_cpu_limit=g("KILN_K8S_RUN_CPU_LIMIT") or None,
        run_memory_limit=g("KILN_K8S_RUN_MEMORY_LIMIT") or d.run_memory_limit,
        node_selector=_mapping("KILN_K8S_NODE_SELECTOR", g("KILN_K8S_NODE_SELECTOR") or ""),
        tolerations_json=g("KILN_K8S_TOLERATIONS") or "",
        extra_env=_mapping("KILN_K8S_EXTRA_ENV", g("KILN_K8S_EXTRA_ENV") or ""),
        workspace_storage_class=g("KILN_K8S_WORKSPACE_STORAGE_CLASS") or None,
        workspace_size=g("KILN_K8S_WORKSPACE_SIZE") or d.workspace_size,
        image_pull_grace_seconds=int(
            parse_duration("KILN_K8S_IMAGE_PULL_GRACE", g("KILN_K8S_IMAGE_PULL_GRACE") or "120")
        ),
        unschedulable_grace_seconds=int(
            parse_duration(
                "KILN_K8S_UNSCHEDULABLE_GRACE", g("KILN_K8S_UNSCHEDULABLE_GRACE") or "300"
            )
        ),
    )


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read settings from ``env`` (default ``os.environ``); ``overrides`` win (CLI options).

    ``secret_keys`` stays empty when KILN_SECRET_KEY is unset: an embedded
    install generates one into the data dir (:func:`server.crypto.ensure_secret_keys`).
    """
    env = os.environ if env is None else env
    g = env.get
    data_dir_raw = overrides.pop("data_dir", None) or g("KILN_DATA_DIR") or "~/.kiln"
    data_dir = Path(str(data_dir_raw)).expanduser().absolute()

    database_url = overrides.pop("database_url", None) or g("KILN_DATABASE_URL") or None
    if database_url:
        check_database_url(str(database_url))

    store, s3 = _object_store(g("KILN_OBJECT_STORE") or "", data_dir, env)

    from server.crypto import parse_keys  # local: crypto imports nothing from here

    secret_keys = parse_keys(g("KILN_SECRET_KEY") or "")

    host = str(overrides.pop("host", None) or g("KILN_HOST") or DEFAULT_HOST)
    port_raw = overrides.pop("port", None)
    port = (
        _int("--port", str(port_raw), 0, 65535)
        if port_raw is not None
        else _int("KILN_PORT", g("KILN_PORT") or str(DEFAULT_PORT), 0, 65535)
    )
    public_url = g("KILN_PUBLIC_URL") or None
    if public_url and urlsplit(public_url).scheme not in ("http", "https"):
        raise ConfigError(f"KILN_PUBLIC_URL: expected an http(s) URL, got {public_url!r}")

    tls_cert = overrides.pop("tls_cert", None) or g("KILN_TLS_CERT") or None
    tls_key = overrides.pop("tls_key", None) or g("KILN_TLS_KEY") or None
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("KILN_TLS_CERT/KILN_TLS_KEY: give both the certificate and the key")
    for name, value in (("KILN_TLS_CERT", tls_cert), ("KILN_TLS_KEY", tls_key)):
        if value and not Path(str(value)).is_file():
            raise ConfigError(f"{name}: no such file: {value}")

    settings = Settings(
        data_dir=data_dir,
        database_url=str(database_url) if database_url else None,
        object_store=store,
        s3=s3,
        secret_keys=secret_keys,
        host=host,
        port=port,
        public_url=public_url,
        launcher=_choice("KILN_LAUNCHER", g("KILN_LAUNCHER") or "local", ("local", "kubernetes")),
        spawner=_choice("KILN_SPAWNER", g("KILN_SPAWNER") or "local", ("local", "kubernetes")),
        run_slots=_int("KILN_RUN_SLOTS", g("KILN_RUN_SLOTS") or "5", 1, 10_000),
        heartbeat_interval=parse_duration(
            "KILN_HEARTBEAT_INTERVAL", g("KILN_HEARTBEAT_INTERVAL") or "5"
        ),
        log_archive_after=parse_duration(
            "KILN_LOG_ARCHIVE_AFTER", g("KILN_LOG_ARCHIVE_AFTER") or "10m"
        ),
        run_retention_days=_int(
            "KILN_RUN_RETENTION_DAYS", g("KILN_RUN_RETENTION_DAYS") or "90", 1, 100_000
        ),
        ide_idle_timeout=parse_duration(
            "KILN_IDE_IDLE_TIMEOUT", g("KILN_IDE_IDLE_TIMEOUT") or "1h"
        ),
        rate_limit_per_minute=_int(
            "KILN_RATE_LIMIT_PER_MINUTE", g("KILN_RATE_LIMIT_PER_MINUTE") or "5000", 1, 10_000_000
        ),
        tls_cert=Path(str(tls_cert)) if tls_cert else None,
        tls_key=Path(str(tls_key)) if tls_key else None,
        log_level=_choice(
            "KILN_LOG_LEVEL",
            (g("KILN_LOG_LEVEL") or "INFO").upper(),
            ("DEBUG", "INFO", "WARNING", "ERROR"),
        ),
        kube=_kube(env),
    )
    if overrides:
        settings = settings.with_overrides(**overrides)
    return settings
