"""Bare strawberry: the benchmark's query shape over plain in-memory objects (no database).

This is the ceiling ``bench.graphql`` compares Kiln with: the same aiohttp
view and the same parser and validation caches, 50 runs with a job, its
environment and 3 steps each, every field a plain attribute.
"""

from __future__ import annotations

import enum

import strawberry
from strawberry.extensions import ParserCache, ValidationCache


@strawberry.enum(name="RunStatus")
class Status(enum.Enum):
    success = "success"
    error = "error"


@strawberry.type
class Environment:
    name: str


@strawberry.type
class Job:
    name: str
    environment: Environment


@strawberry.type
class RunStep:
    name: str
    status: Status


@strawberry.type
class Run:
    id: strawberry.ID
    status: Status
    status_code: int
    job: Job
    steps: list[RunStep]


@strawberry.type
class RunEdge:
    node: Run


@strawberry.type
class RunConnection:
    edges: list[RunEdge]


_ENV = Environment(name="Production")
_JOBS = [Job(name=f"job-{i}", environment=_ENV) for i in range(5)]
_STEPS = [RunStep(name=n, status=Status.success) for n in ("dbt seed", "dbt run", "dbt test")]
_RUNS = [
    Run(id=str(i), status=Status.success, status_code=10, job=_JOBS[i % 5], steps=_STEPS)
    for i in range(50)
]


@strawberry.type
class Query:
    @strawberry.field
    async def runs(self, first: int = 50) -> RunConnection:
        return RunConnection(edges=[RunEdge(node=r) for r in _RUNS[:first]])


schema = strawberry.Schema(
    query=Query,
    extensions=[lambda: ParserCache(maxsize=256), lambda: ValidationCache(maxsize=256)],
)
