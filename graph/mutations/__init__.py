"""The Mutation root, merged from one class per area."""

from __future__ import annotations

from strawberry.tools import merge_types

from graph.mutations.access import AccessMutations
from graph.mutations.auth import AuthMutations
from graph.mutations.ide import IdeMutations
from graph.mutations.jobs import JobMutations
from graph.mutations.projects import ProjectMutations
from graph.mutations.warehouse import WarehouseMutations
from graph.mutations.webhooks import WebhookMutations

Mutation = merge_types(
    "Mutation",
    (
        AuthMutations,
        ProjectMutations,
        WarehouseMutations,
        JobMutations,
        AccessMutations,
        IdeMutations,
        WebhookMutations,
    ),
)
