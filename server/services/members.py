"""Memberships: who belongs to an account, with which role.

Managers (MANAGE_MEMBERS) add, re-role and remove members, but never above
their own rank, and an account always keeps at least one owner. Adding an
email that has no user yet creates one (an invitation: without a password
until one is set). Anyone may leave an account, except its last owner.
"""

from __future__ import annotations

from tortoise.transactions import in_transaction

from server.models import Account, Membership, Role, User
from server.services import accounts, audit, auth
from server.services.actor import Actor
from server.services.errors import Conflict, Forbidden, NotFound
from server.services.permissions import RANK, Action
from server.services.tokens import check_grantable


async def _owners(account_id: int) -> int:
    return await Membership.filter(account_id=account_id, role=Role.OWNER.value).count()


def _check_outranks(actor: Actor, member: Membership) -> None:
    if RANK[Role(member.role)] > RANK[Role(actor.role)]:
        raise Forbidden(f"a {actor.role} cannot change a {member.role}")


async def add_member(
    actor: Actor, email: str, role: str, *, name: str = "", password: str | None = None
) -> Membership:
    actor.require(Action.MANAGE_MEMBERS)
    check_grantable(actor, role)
    email = (email or "").strip().lower()
    account = await Account.get(id=actor.account_id)
    async with in_transaction():
        user = await User.get_or_none(email=email)
        if user is None:
            user = await accounts.create_user(email, name=name, password=password)
        elif await Membership.exists(account_id=account.id, user_id=user.id):
            raise Conflict(f"{email} is already a member; change their role instead", field="email")
        membership = await accounts.add_member(account, user, role)
        await audit.record(
            actor, "member.add", "membership", membership.id, {"email": email, "role": role}
        )
    auth.forget_credentials()
    return membership


async def change_role(actor: Actor, membership_id: int, role: str) -> Membership:
    actor.require(Action.MANAGE_MEMBERS)
    check_grantable(actor, role)
    async with in_transaction():
        member = await actor.scoped(Membership).select_for_update().get_or_none(id=membership_id)
        if member is None:
            raise NotFound("membership not found")
        _check_outranks(actor, member)
        if (
            member.role == Role.OWNER.value
            and role != member.role
            and await _owners(actor.account_id) <= 1
        ):
            raise Conflict("the account must keep at least one owner", field="role")
        before = member.role
        member.role = role
        await member.save(update_fields=["role", "updated_at"])
        await audit.record(
            actor, "member.role", "membership", member.id, {"from": before, "to": role}
        )
    auth.forget_credentials()
    return member


async def remove_member(actor: Actor, membership_id: int) -> None:
    member = await actor.get(Membership, membership_id, what="membership")
    leaving = member.user_id == actor.user_id  # type: ignore[attr-defined]
    if not leaving:
        actor.require(Action.MANAGE_MEMBERS)
        _check_outranks(actor, member)
    async with in_transaction():
        if member.role == Role.OWNER.value and await _owners(actor.account_id) <= 1:
            raise Conflict("the account must keep at least one owner")
        await member.delete()
        await audit.record(
            actor,
            "member.remove",
            "membership",
            membership_id,
            {"user_id": member.user_id},  # type: ignore[attr-defined]
        )
    auth.forget_credentials()
