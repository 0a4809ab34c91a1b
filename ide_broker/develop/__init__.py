"""The develop server: one user's IDE backend (``kiln develop``).

A JSON-RPC 2.0 service over one authenticated websocket, serving files, git,
dbt runs and a warm in-process dbt for one workspace. Modules: ``server``
(aiohttp app and entry point), ``rpc`` (dispatch, params), ``methods`` (the
method table), ``session`` (wiring), ``fs``, ``git``, ``dbt_runner`` (warm
dbt), ``dbt_invoke`` (dbt subprocesses), ``fmt`` (sqlfmt), ``errors``.
"""
