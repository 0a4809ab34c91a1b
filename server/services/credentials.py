"""Credentials: who dbt connects as. Secret fields are write-only.

``secrets`` is stored as one Fernet-encrypted JSON object (``platform.vault``).
Reads expose only *which* secret fields are set (:func:`secret_names`), never a
value: the decrypted secrets leave the server only in a run worker's spec.

Deployment credentials (no user) need MANAGE_CREDENTIALS. Development
credentials belong to one user (``for_user``): that user manages them with
the DEVELOP permission, admins with MANAGE_CREDENTIALS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tortoise.transactions import in_transaction

from server.crypto import Vault
from server.models import Credentials, Environment, Project
from server.services import audit
from server.services.actor import Actor
from server.services.connections import check_adapter
from server.services.errors import Conflict, Forbidden, NotFound, ValidationFailed
from server.services.permissions import Action, allowed
from server.services.validation import check_plain_fields, check_text

MAX_SECRET = 64 * 1024
FIELDS = {"name", "adapter_type", "fields", "secrets"}


def _check_secrets(value: Any) -> dict[str, str | None]:
    """Secret updates: name → new value, or None to remove the field."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationFailed("secrets must be a JSON object", field="secrets")
    out: dict[str, str | None] = {}
    for key, v in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= 100:
            raise ValidationFailed("secrets: keys must be 1-100 characters", field="secrets")
        if v is not None and (not isinstance(v, str) or len(v) > MAX_SECRET):
            raise ValidationFailed(
                f"secrets.{key} must be a string of at most {MAX_SECRET} characters",
                field="secrets",
            )
        out[key] = v
    return out


def _decrypt(vault: Vault, ciphertext: str) -> dict[str, str]:
    return json.loads(vault.decrypt(ciphertext)) if ciphertext else {}


def secret_names(vault: Vault, ciphertext: str) -> list[str]:
    """Which secret fields are set (the API shows these, never the values)."""
    return sorted(_decrypt(vault, ciphertext))


def _may_manage(actor: Actor, creds_user_id: int | None) -> bool:
    if allowed(actor.role, Action.MANAGE_CREDENTIALS):
        return True
    return (
        creds_user_id is not None
        and creds_user_id == actor.user_id
        and allowed(actor.role, Action.DEVELOP)
    )


async def _get_managed(actor: Actor, credentials_id: int) -> Credentials:
    creds = await actor.get(Credentials, credentials_id, what="credentials")
    uid = creds.user_id  # type: ignore[attr-defined]
    if (
        uid is not None
        and uid != actor.user_id
        and not allowed(actor.role, Action.MANAGE_CREDENTIALS)
    ):
        raise NotFound("credentials not found")  # someone else's: not even visible
    if not _may_manage(actor, uid):
        raise Forbidden(f"the {actor.role} role may not manage these credentials")
    return creds


async def create_credentials(
    actor: Actor,
    vault: Vault,
    project_id: int,
    values: Mapping[str, Any],
    *,
    for_user: bool = False,
) -> Credentials:
    if for_user:
        actor.require(Action.DEVELOP)
        if actor.user_id is None:
            raise ValidationFailed(
                "a service token has no user to own credentials", field="forUser"
            )
    else:
        actor.require(Action.MANAGE_CREDENTIALS)
    unknown = set(values) - FIELDS
    if unknown:
        raise ValueError(f"unknown credentials fields {unknown}")
    project = await actor.get(Project, project_id, what="project")
    name = check_text(values.get("name"), "name", max_length=200)
    adapter = check_adapter(values.get("adapter_type"))
    fields = check_plain_fields(values.get("fields"), "fields")
    secrets = {k: v for k, v in _check_secrets(values.get("secrets")).items() if v is not None}
    async with in_transaction():
        creds = await Credentials.create(
            account_id=actor.account_id,
            project_id=project.id,
            user_id=actor.user_id if for_user else None,
            name=name,
            adapter_type=adapter,
            fields_json=fields,
            secrets=vault.encrypt(json.dumps(secrets)) if secrets else "",
        )
        await audit.record(
            actor,
            "credentials.create",
            "credentials",
            creds.id,
            {"secret_fields": sorted(secrets), "for_user": for_user},
        )
    return creds


async def update_credentials(
    actor: Actor, vault: Vault, credentials_id: int, changes: Mapping[str, Any]
) -> Credentials:
    unknown = set(changes) - FIELDS
    if unknown:
        raise ValueError(f"unknown credentials fields {unknown}")
    creds = await _get_managed(actor, credentials_id)
    if "name" in changes:
        creds.name = check_text(changes["name"], "name", max_length=200)
    if "adapter_type" in changes:
        creds.adapter_type = check_adapter(changes["adapter_type"])
    if "fields" in changes:
        creds.fields_json = check_plain_fields(changes["fields"], "fields")
    touched: list[str] = []
    if "secrets" in changes:
        current = _decrypt(vault, creds.secrets)
        for key, value in _check_secrets(changes["secrets"]).items():
            touched.append(key)
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        creds.secrets = vault.encrypt(json.dumps(current)) if current else ""
    async with in_transaction():
        await creds.save()
        await audit.record(
            actor,
            "credentials.update",
            "credentials",
            creds.id,
            {"fields": sorted(set(changes) - {"secrets"}), "secret_fields": sorted(touched)},
        )
    return creds


async def delete_credentials(actor: Actor, credentials_id: int) -> None:
    creds = await _get_managed(actor, credentials_id)
    users = await Environment.filter(
        account_id=actor.account_id, credentials_id=creds.id, deleted_at=None
    ).values_list("name", flat=True)
    if users:
        raise Conflict(f"credentials are used by environment(s): {', '.join(sorted(users))}")
    async with in_transaction():
        await creds.delete()
        await audit.record(actor, "credentials.delete", "credentials", credentials_id)
