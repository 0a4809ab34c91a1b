"""The ``kiln`` command: one entry point for every process and admin task.

Errors a user can fix (bad settings, port in use, database down, data dir
not writable) print one ``kiln: error: ...`` line and exit non-zero; they
never show a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from server import __version__
from server.config import ConfigError, Settings, load_settings


class CliError(Exception):
    """A failure to report as one line with exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        help="where Kiln keeps its state (default: $KILN_DATA_DIR or ~/.kiln)",
    )
    p.add_argument(
        "--database-url", help="PostgreSQL URL (default: $KILN_DATABASE_URL or embedded)"
    )


def _add_listen(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default 8580)")
    p.add_argument("--tls-cert", help="PEM certificate: serve https")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiln", description="Kiln: a self-hosted platform for dbt."
    )
    parser.add_argument("--version", action="version", version=f"kiln {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("up", help="run everything in one process on embedded defaults")
    _add_data_dir(p)
    _add_listen(p)
    p.add_argument("--demo", action="store_true", help="create the demo account, project and job")

    p = sub.add_parser("gateway", help="serve the HTTP API, GraphQL and the IDE proxy")
    _add_data_dir(p)
    _add_listen(p)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway processes sharing the port, e.g. one per core (default 1)",
    )
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    p = sub.add_parser("scheduler", help="cron, dispatch, run monitoring, cleanup")
    _add_data_dir(p)
    p.add_argument("--port", type=int, default=8581, help="health and /metrics port (default 8581)")

    p = sub.add_parser("worker", help="the run worker (started by a launcher)")
    wsub = p.add_subparsers(dest="worker_command", metavar="WHAT", required=True)
    wr = wsub.add_parser("run", help="execute one run")
    wr.add_argument("run_id", type=int)

    p = sub.add_parser(
        "develop",
        help="the develop server of one IDE session (started by a spawner)",
        add_help=False,
    )

    p = sub.add_parser("migrate", help="apply database migrations")
    _add_data_dir(p)

    p = sub.add_parser("schema", help="print the GraphQL schema (SDL)")

    p = sub.add_parser("admin", help="accounts, users and tokens")
    asub = p.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    a = asub.add_parser("create-account", help="create an account")
    a.add_argument("name")
    _add_data_dir(a)
    a = asub.add_parser("create-user", help="create a user and add them to an account")
    a.add_argument("email")
    a.add_argument("--account", required=True, help="account name")
    a.add_argument(
        "--role", required=True, help="owner, admin, developer, analyst, job_runner, viewer"
    )
    a.add_argument("--name", default="", help="display name")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _add_data_dir(a)
    a = asub.add_parser(
        "create-token", help="create a service token (printed once, on the last line)"
    )
    a.add_argument("--account", required=True, help="account name")
    a.add_argument("--name", required=True, help="what the token is for")
    a.add_argument(
        "--role", required=True, help="owner, admin, developer, analyst, job_runner, viewer"
    )
    _add_data_dir(a)
    asub.add_parser("generate-key", help="print a new KILN_SECRET_KEY value")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("data_dir", "database_url", "host", "port", "tls_cert", "tls_key"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return load_settings(**overrides)


def check_data_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise CliError(f"data dir {path} is not writable: {exc.strerror or exc}", 2) from None


def _run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    try:
        import uvloop

        return uvloop.run(coro_fn())
    except ImportError:
        return asyncio.run(coro_fn())


async def _with_platform(settings: Settings, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    from server.platform import Platform

    platform = await Platform.open(settings)
    try:
        return await fn(platform)
    finally:
        await platform.close()


def cmd_up(args: argparse.Namespace, *, demo: bool) -> int:
    from server import logconfig
    from server.scheduler.process import scheduler_part
    from server.serve import run_server

    settings = _settings(args)
    logconfig.setup(settings.log_level)
    check_data_dir(settings.data_dir)
    _run(lambda: run_server(settings, demo=demo, parts=[("scheduler", scheduler_part)]))
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    """The HTTP side only: API, GraphQL, IDE proxy, console (no scheduler, no dispatch)."""
    from server import logconfig
    from server.serve import run_server

    settings = _settings(args)
    logconfig.setup(settings.log_level)
    check_data_dir(settings.data_dir)
    if args.workers < 1:
        raise CliError(f"--workers must be at least 1 (got {args.workers})", 2)
    if args.workers > 1:
        from server.gateway_workers import supervise

        if settings.database_url is None:
            raise CliError(
                "--workers needs an external database (KILN_DATABASE_URL or --database-url):"
                " the embedded PostgreSQL belongs to one process",
                2,
            )
        if settings.port == 0:
            raise CliError("--workers needs a fixed --port (the workers share it)", 2)
        return int(_run(lambda: supervise(settings, args.workers)))
    _run(lambda: run_server(settings, with_runs=False, reuse_port=args.reuse_port))
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    from server import logconfig
    from server.scheduler.process import run_scheduler

    port = args.port
    args.port = None  # the scheduler's own port is not the gateway's
    settings = _settings(args)
    logconfig.setup(settings.log_level)
    check_data_dir(settings.data_dir)
    _run(lambda: run_scheduler(settings, port))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from server.db import migrate
    from server.platform import resolve_database

    settings = _settings(args)
    check_data_dir(settings.data_dir)
    url, pg = resolve_database(settings)
    try:
        applied = _run(lambda: migrate(url, progress=True))
    finally:
        if pg is not None:
            pg.release()
    print(f"{len(applied)} migration(s) applied; the database is up to date.")
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    if args.admin_command == "generate-key":
        from server.crypto import generate_key

        print(generate_key())
        return 0
    from server.services import accounts

    settings = _settings(args)
    check_data_dir(settings.data_dir)
    password: str | None = None
    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CliError("--password-stdin: no password on stdin", 2)

    async def act(_platform: Any) -> None:
        if args.admin_command == "create-account":
            account = await accounts.create_account(args.name)
            print(f"created account {account.name} (id {account.id})")
        elif args.admin_command == "create-user":
            accounts.check_role(args.role)
            account = await accounts.get_account_by_name(args.account)
            user = await accounts.create_user(args.email, name=args.name, password=password)
            await accounts.add_member(account, user, args.role)
            print(f"created user {user.email} (id {user.id}) as {args.role} of {account.name}")
        elif args.admin_command == "create-token":
            account = await accounts.get_account_by_name(args.account)
            issued = await accounts.create_token(account, name=args.name, role=args.role)
            print(f"created token {args.name!r} ({args.role}) for account {account.name}.")
            print("It is shown once; store it now:")
            print(issued.secret)

    _run(lambda: _with_platform(settings, act))
    return 0


def cmd_schema(_args: argparse.Namespace) -> int:
    from graph.schema import sdl

    sys.stdout.write(sdl())
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """``kiln worker run RUN_ID``: holds no database settings; talks to the API only."""
    from server.worker.main import main as worker_main

    return worker_main(args.run_id)


def dispatch(args: argparse.Namespace, rest: list[str]) -> int:
    match args.command:
        case "up":
            return cmd_up(args, demo=args.demo)
        case "migrate":
            return cmd_migrate(args)
        case "admin":
            return cmd_admin(args)
        case "schema":
            return cmd_schema(args)
        case "develop":
            from ide_broker.develop.server import main as develop_main

            return develop_main(rest)
        case "scheduler":
            return cmd_scheduler(args)
        case "worker":
            return cmd_worker(args)
        case "gateway":
            return cmd_gateway(args)
    raise CliError(f"unknown command {args.command}", 2)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        # The run worker imports no database or gateway code (and starts faster without it).
        code = cmd_worker(build_parser().parse_args(argv))
        sys.stdout.flush()
        if os.environ.get("KILN_CLI_NO_EXIT"):
            return code
        sys.exit(code)
    from server.db import DatabaseUnavailable
    from server.embedded_pg import EmbeddedPostgresError
    from server.serve import PortInUse
    from server.services.errors import DomainError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    rest: list[str] = []
    if argv and argv[0] == "develop":  # the develop server parses its own options
        args, rest = parser.parse_known_args(argv[:1])
        rest = argv[1:]
    else:
        args = parser.parse_args(argv)
    try:
        code = dispatch(args, rest)
    except (
        ConfigError,
        CliError,
        PortInUse,
        DatabaseUnavailable,
        EmbeddedPostgresError,
        DomainError,
    ) as exc:
        print(f"kiln: error: {exc}", file=sys.stderr)
        code = (
            getattr(exc, "code", 1)
            if isinstance(exc, CliError)
            else (2 if isinstance(exc, ConfigError | PortInUse) else 1)
        )
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    if os.environ.get("KILN_CLI_NO_EXIT"):
        return code
    sys.exit(code)


if __name__ == "__main__":
    main()
