"""Dataloaders: listing runs with their relations costs the same SQL for 10 runs or 100,
and a request's rows are freed when it answers, without the garbage collector."""

from __future__ import annotations

import gc

from bench.sqlcount import counting
from server.services import auth
from tests.factories import make_tenant
from tests.graphql.conftest import add_runs

QUERY = """query($n: Int) { runs(first: $n) { edges { node { id status statusCode
  job { name environment { name } project { name } lastRun { id } }
  environment { name connection { name } credentials { name project { name } } }
  project { name environments { name } }
  steps { name status run { id } } artifacts { path } triggeredBy { email } } } } }"""


async def statements(api, token: str, n: int, *, cold: bool) -> int:
    if cold:
        auth.forget_credentials()
    with counting() as count:
        data = await api.data(QUERY, {"n": n}, token=token)
    assert len(data["runs"]["edges"]) == n
    return count()


async def test_constant_sql_for_any_page_size(api, platform) -> None:
    t = await make_tenant()
    await add_runs(t, 100)
    await api.data(QUERY, {"n": 1}, token=t.token)
    warm = {n: await statements(api, t.token, n, cold=False) for n in (10, 100)}
    cold = {n: await statements(api, t.token, n, cold=True) for n in (10, 100)}
    assert warm[10] == warm[100], warm
    assert cold[10] == cold[100], cold
    # one page + one statement per relation level; auth when not cached
    assert warm[100] <= 14, warm
    assert cold[100] <= warm[100] + 3, cold


async def test_bench_query_statement_count(api, platform) -> None:
    t = await make_tenant()
    await add_runs(t, 60)
    q = (
        "{ runs(first: 50) { edges { node { id status statusCode job { name environment"
        " { name } } steps { name status } } } } }"
    )
    await api.data(q, token=t.token)
    with counting() as count:
        await api.data(q, token=t.token)
    assert count() == 4  # page, jobs, environments, steps (released connections need no reset)


async def test_rows_freed_when_the_request_answers(api, platform) -> None:
    """Rows point at their request's loaders and the loaders at the rows; the view
    breaks that cycle once the response is built, so reference counting frees a
    page at once instead of leaving it to a collector pass over the whole heap."""
    from graph.rows import Row

    t = await make_tenant()
    await add_runs(t, 20)
    await api.data(QUERY, {"n": 20}, token=t.token)  # warm: caches, connections
    gc.collect()
    gc.disable()
    try:
        data = await api.data(QUERY, {"n": 20}, token=t.token)
        assert len(data["runs"]["edges"]) == 20
        alive = [o for o in gc.get_objects() if isinstance(o, Row)]
    finally:
        gc.enable()
    assert alive == [], f"{len(alive)} rows outlived their request"

