"""Organisations, users and the assignment of phones to users.

Organisations form a tree (`parent_id`); a user belongs to one organisation and has a role
(`admin` may use the admin API with a login session, `user` only their bound phones). A phone has
at most one owner; binding writes a notice to the outbox, unbinding disconnects its viewers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from cloudphone.edge.control import notifier
from cloudphone.edge.control import phones as ph
from cloudphone.edge.control.clock import Clock
from cloudphone.edge.control.errors import bad_request, conflict, not_found
from cloudphone.edge.control.fleet import Fleet
from cloudphone.edge.control.notifier import Notifier
from cloudphone.edge.control.passwords import hash_password, password_problem
from cloudphone.edge.control.store import Row, Store, Tx

log = logging.getLogger(__name__)

LOGIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{2,63}$")
MOBILE_RE = re.compile(r"^\+?[0-9]{6,15}$")
ROLES = ("admin", "user")
REASON_UNASSIGNED = "unassigned: the phone was taken from this user"


def _name(value: Any, what: str = "name") -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 64:
        raise bad_request(f"invalid_{what}", f"{what} must be 1..64 characters")
    return value.strip()


def _mobile(value: Any) -> str:
    if not isinstance(value, str) or not MOBILE_RE.match(value):
        raise bad_request("invalid_mobile", "mobile must be 6..15 digits, optionally with '+'")
    return value


def _role(value: Any) -> str:
    if value not in ROLES:
        raise bad_request("invalid_role", f"role must be one of {list(ROLES)}")
    return str(value)


def mask_mobile(mobile: str) -> str:
    return mobile[:3] + "*" * max(0, len(mobile) - 7) + mobile[-4:]


def user_dict(row: Row, phones: int = 0) -> dict[str, Any]:
    return {
        "id": row["id"],
        "login": row["login"],
        "name": row["name"],
        "mobile": row["mobile"],
        "org_id": row["org_id"],
        "role": row["role"],
        "created_at": row["created_at"],
        "phones": phones,
    }


def org_dict(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "parent_id": row["parent_id"],
        "created_at": row["created_at"],
    }


class Directory:
    """Who is who in the tenant, and which phone is whose."""

    def __init__(
        self, store: Store, clock: Clock, fleet: Fleet, notices: Notifier, account_id: int
    ) -> None:
        self.store = store
        self.clock = clock
        self.fleet = fleet
        self.notices = notices
        self.account_id = account_id
        # Called after a phone may have changed organisation (assignment, a user moved, an
        # organisation deleted): the edge's policy book reloads who is whose.
        self.changed: list[Callable[[], Awaitable[None]]] = []

    def now(self) -> int:
        return int(self.clock.now())

    async def _changed(self) -> None:
        for hook in self.changed:
            try:
                await hook()
            except Exception:
                log.exception("directory: a change listener failed")

    # -- organisations ------------------------------------------------------------------------

    async def _org(self, tx: Tx, org_id: Any) -> Row:
        if type(org_id) is not int:
            raise bad_request("invalid_org", "org_id must be an integer")
        row = await tx.fetchone(
            "SELECT * FROM orgs WHERE id = ? AND account_id = ?", (org_id, self.account_id)
        )
        if row is None:
            raise not_found("org", org_id)
        return row

    async def create_org(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body.get("name"))
        async with self.store.transaction() as tx:
            parent = body.get("parent_id")
            if parent is not None:
                await self._org(tx, parent)
            org_id = await tx.insert(
                "INSERT INTO orgs (account_id, name, parent_id, created_at) VALUES (?, ?, ?, ?)",
                (self.account_id, name, parent, self.now()),
            )
            return org_dict(await self._org(tx, org_id))

    async def org(self, org_id: int) -> dict[str, Any]:
        async with self.store.transaction() as tx:
            return org_dict(await self._org(tx, org_id))

    async def org_subtree(self, org_id: int) -> list[int]:
        """An organisation and every organisation under it."""
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                "WITH RECURSIVE sub(id) AS (SELECT id FROM orgs WHERE id = ? AND account_id = ?"
                " UNION SELECT o.id FROM orgs o JOIN sub ON o.parent_id = sub.id)"
                " SELECT id FROM sub ORDER BY id",
                (org_id, self.account_id),
            )
        return [int(r["id"]) for r in rows]

    async def phone_org(self, phone_id: str) -> tuple[bool, int | None]:
        """Whether the control plane sold this phone, and its owner's organisation."""
        async with self.store.transaction() as tx:
            row = await tx.fetchone(
                "SELECT u.org_id FROM phones p LEFT JOIN users u ON u.id = p.user_id"
                " WHERE p.id = ? AND p.account_id = ?",
                (phone_id, self.account_id),
            )
        if row is None:
            return False, None
        return True, row["org_id"]

    async def orgs(self) -> list[dict[str, Any]]:
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT * FROM orgs WHERE account_id = ? ORDER BY id", (self.account_id,)
            )
        return [org_dict(r) for r in rows]

    async def update_org(self, org_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """Rename (`name`) and/or move (`parent_id`, null for the top) an organisation."""
        if not set(body) & {"name", "parent_id"}:
            raise bad_request("invalid_update", "give name and/or parent_id")
        async with self.store.transaction() as tx:
            await self._org(tx, org_id)
            if "name" in body:
                await tx.execute(
                    "UPDATE orgs SET name = ? WHERE id = ?", (_name(body["name"]), org_id)
                )
            if "parent_id" in body:
                parent = body["parent_id"]
                if parent is not None:
                    await self._org(tx, parent)
                    ancestor: Any = parent
                    while ancestor is not None:  # moving under its own subtree makes a cycle
                        if ancestor == org_id:
                            raise conflict("org_cycle", "an organisation cannot move under itself")
                        ancestor = (await self._org(tx, ancestor))["parent_id"]
                await tx.execute("UPDATE orgs SET parent_id = ? WHERE id = ?", (parent, org_id))
            return org_dict(await self._org(tx, org_id))

    async def delete_org(self, org_id: int) -> None:
        async with self.store.transaction() as tx:
            await self._org(tx, org_id)
            busy = await tx.fetchone(
                "SELECT (SELECT COUNT(*) FROM users WHERE org_id = ?)"
                " + (SELECT COUNT(*) FROM orgs WHERE parent_id = ?) AS n",
                (org_id, org_id),
            )
            if busy and busy["n"]:
                raise conflict("org_not_empty", "move or delete its users and sub-organisations")
            await tx.execute("DELETE FROM orgs WHERE id = ?", (org_id,))
            await tx.execute("DELETE FROM org_policies WHERE org = ?", (str(org_id),))
        await self._changed()

    # -- users --------------------------------------------------------------------------------

    async def _user(self, tx: Tx, user_id: Any) -> Row:
        if type(user_id) is not int:
            raise bad_request("invalid_user", "user_id must be an integer")
        row = await tx.fetchone(
            "SELECT * FROM users WHERE id = ? AND account_id = ?", (user_id, self.account_id)
        )
        if row is None:
            raise not_found("user", user_id)
        return row

    async def _bound(self, tx: Tx, user_id: int) -> int:
        row = await tx.fetchone("SELECT COUNT(*) AS n FROM phones WHERE user_id = ?", (user_id,))
        return int(row["n"]) if row else 0

    async def create_user(self, body: dict[str, Any]) -> dict[str, Any]:
        login = body.get("login")
        if not isinstance(login, str) or not LOGIN_RE.match(login):
            raise bad_request("invalid_login", "login: 3..64 letters, digits, '.', '_', '@', '-'")
        name, mobile, role = (
            _name(body.get("name")),
            _mobile(body.get("mobile")),
            _role(body.get("role", "user")),
        )
        problem = password_problem(body.get("password"))
        if problem:
            raise bad_request("invalid_password", problem)
        async with self.store.transaction() as tx:  # validate before paying for scrypt
            await self._org(tx, body.get("org_id"))
        hashed = await hash_password(str(body["password"]))
        async with self.store.transaction() as tx:
            await self._org(tx, body.get("org_id"))
            if await tx.fetchone("SELECT id FROM users WHERE login = ?", (login.lower(),)):
                raise conflict("login_taken", f"login {login!r} is taken")
            user_id = await tx.insert(
                "INSERT INTO users (account_id, org_id, login, name, mobile, role, password_hash,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.account_id,
                    body["org_id"],
                    login.lower(),
                    name,
                    mobile,
                    role,
                    hashed,
                    self.now(),
                ),
            )
            return user_dict(await self._user(tx, user_id))

    async def users(self, org_id: int | None = None) -> list[dict[str, Any]]:
        sql = (
            "SELECT u.*, (SELECT COUNT(*) FROM phones p WHERE p.user_id = u.id) AS bound"
            " FROM users u WHERE u.account_id = ?"
        )
        params: list[Any] = [self.account_id]
        if org_id is not None:
            sql += " AND u.org_id = ?"
            params.append(org_id)
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(sql + " ORDER BY u.id", params)
        return [user_dict(r, r["bound"]) for r in rows]

    async def user(self, user_id: int) -> dict[str, Any]:
        async with self.store.transaction() as tx:
            row = await self._user(tx, user_id)
            return user_dict(row, await self._bound(tx, user_id))

    async def update_user(self, user_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """Rename, change mobile or role, move to another organisation."""
        allowed = {"name", "mobile", "role", "org_id"}
        if not body or set(body) - allowed:
            raise bad_request("invalid_update", f"give some of {sorted(allowed)}")
        async with self.store.transaction() as tx:
            await self._user(tx, user_id)
            if "name" in body:
                await tx.execute(
                    "UPDATE users SET name = ? WHERE id = ?", (_name(body["name"]), user_id)
                )
            if "mobile" in body:
                await tx.execute(
                    "UPDATE users SET mobile = ? WHERE id = ?", (_mobile(body["mobile"]), user_id)
                )
            if "role" in body:
                await tx.execute(
                    "UPDATE users SET role = ? WHERE id = ?", (_role(body["role"]), user_id)
                )
            if "org_id" in body:
                await self._org(tx, body["org_id"])
                await tx.execute(
                    "UPDATE users SET org_id = ? WHERE id = ?", (body["org_id"], user_id)
                )
            user = user_dict(await self._user(tx, user_id), await self._bound(tx, user_id))
        if "org_id" in body:
            await self._changed()
        return user

    async def delete_user(self, user_id: int) -> None:
        async with self.store.transaction() as tx:
            await self._user(tx, user_id)
            if await self._bound(tx, user_id):
                raise conflict("user_has_phones", "unassign the user's phones first")
            for table in ("sessions", "devices", "challenges"):
                await tx.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
            await tx.execute("DELETE FROM users WHERE id = ?", (user_id,))

    # -- assignment ---------------------------------------------------------------------------

    async def assign(self, phone_id: str, user_id: Any) -> dict[str, Any]:
        now = self.now()
        async with self.store.transaction() as tx:
            phone = await ph.get(tx, phone_id, self.account_id)
            ph.require_live(phone)
            user = await self._user(tx, user_id)
            if phone["user_id"] == user["id"]:
                return ph.as_dict(phone)
            if phone["user_id"] is not None:
                raise conflict("already_assigned", "unassign the phone from its owner first")
            await tx.execute("UPDATE phones SET user_id = ? WHERE id = ?", (user["id"], phone_id))
            await notifier.enqueue(
                tx,
                now,
                user["mobile"],
                "phone_bound",
                f"cloudphone: phone {phone['name']} is now bound to your account {user['login']}.",
                {"user_id": user["id"], "phone_id": phone_id, "phone_name": phone["name"]},
            )
            row = await ph.get(tx, phone_id)
        self.notices.kick()
        await self._changed()
        return ph.as_dict(row)

    async def unassign(self, phone_id: str) -> dict[str, Any]:
        async with self.store.transaction() as tx:
            phone = await ph.get(tx, phone_id, self.account_id)
            await tx.execute("UPDATE phones SET user_id = NULL WHERE id = ?", (phone_id,))
            row = await ph.get(tx, phone_id)
        await self._changed()
        if phone["user_id"] is not None and self.fleet.disconnect is not None:
            await self.fleet.disconnect(phone_id, REASON_UNASSIGNED)
        return ph.as_dict(row)

    async def user_phones(self, user_id: int) -> list[dict[str, Any]]:
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT * FROM phones WHERE user_id = ? AND state != ? ORDER BY name",
                (user_id, ph.PhoneState.RELEASED),
            )
        return [ph.user_view(r) for r in rows]
