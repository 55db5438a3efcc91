"""Logins: password, then a one-time code by SMS unless the browser is trusted; sessions.

Secrets handed to browsers (session, trusted-browser token) are random and stored only as
SHA-256 hashes. Failures are logged per account name and per address; both limits apply whether
or not the account exists, and a wrong password and an unknown account get the same answer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from cloudphone.edge.control import notifier
from cloudphone.edge.control.clock import Clock
from cloudphone.edge.control.config import ControlConfig
from cloudphone.edge.control.directory import mask_mobile, user_dict
from cloudphone.edge.control.errors import ControlError, bad_request
from cloudphone.edge.control.notifier import Notifier
from cloudphone.edge.control.passwords import (
    hash_password,
    password_problem,
    verify_password,
)
from cloudphone.edge.control.store import Row, Store, Tx

STALE = "the code expired or was used; log in again"


def bad_credentials() -> ControlError:
    """One answer for an unknown account and a wrong password."""
    return ControlError(401, "invalid_credentials", "wrong account or password")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in browser: who, and the CSRF token its writes must carry."""

    token_hash: str
    user: Row
    csrf: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class Granted:
    """A new session (and, when asked for, a trusted-browser token) to set as cookies."""

    token: str
    csrf: str
    expires_at: int
    user: Row
    device_token: str | None = None


@dataclass(frozen=True, slots=True)
class Challenge:
    id: str
    expires_at: int
    sent_to: str


class Logins:
    def __init__(
        self, store: Store, clock: Clock, config: ControlConfig, notices: Notifier
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.notices = notices

    def now(self) -> int:
        return int(self.clock.now())

    # -- rate limits --------------------------------------------------------------------------

    async def _failures(self, tx: Tx, column: str, value: str, now: int) -> int:
        row = await tx.fetchone(
            f"SELECT COUNT(*) AS n FROM auth_failures WHERE {column} = ? AND at > ?",
            (value, now - self.config.fail_window_s),
        )
        return int(row["n"]) if row else 0

    async def _check_limits(self, login: str, ip: str, now: int) -> None:
        async with self.store.transaction() as tx:
            if await self._failures(tx, "ip", ip, now) >= self.config.ip_fail_limit:
                raise ControlError(429, "rate_limited", "too many failed attempts from here")
            if await self._failures(tx, "login", login, now) >= self.config.login_fail_limit:
                raise ControlError(
                    429, "account_locked", "too many failed attempts; try again later"
                )

    async def _fail(self, login: str, ip: str, kind: str, now: int) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO auth_failures (at, login, ip, kind) VALUES (?, ?, ?, ?)",
                (now, login, ip, kind),
            )

    # -- the two steps ------------------------------------------------------------------------

    async def login(
        self, account: Any, password: Any, ip: str, device_token: str | None
    ) -> Granted | Challenge:
        if not isinstance(account, str) or not isinstance(password, str) or not account:
            raise bad_request("invalid_credentials_format", "account and password are strings")
        login = account.strip().lower()[:128]
        now = self.now()
        await self._check_limits(login, ip, now)
        async with self.store.transaction() as tx:
            user = await tx.fetchone("SELECT * FROM users WHERE login = ?", (login,))
        ok = await verify_password(password[:1024], user["password_hash"] if user else None)
        if not ok or user is None:
            await self._fail(login, ip, "password", now)
            raise bad_credentials()
        if device_token and await self._trusted(user["id"], device_token, now):
            return await self._grant(user, now, trust=False)
        return await self._challenge(user, login, now)

    async def _trusted(self, user_id: int, device_token: str, now: int) -> bool:
        async with self.store.transaction() as tx:
            row = await tx.fetchone(
                "SELECT id FROM devices WHERE token_hash = ? AND user_id = ? AND revoked_at IS NULL"
                " AND expires_at > ?",
                (digest(device_token), user_id, now),
            )
        return row is not None

    async def _challenge(self, user: Row, login: str, now: int) -> Challenge:
        challenge_id = secrets.token_urlsafe(18)
        code = f"{secrets.randbelow(10**6):06d}"
        expires = now + self.config.code_ttl_s
        async with self.store.transaction() as tx:
            sent = await tx.fetchone(
                "SELECT COUNT(*) AS n FROM challenges WHERE user_id = ? AND created_at > ?",
                (user["id"], now - self.config.fail_window_s),
            )
            if sent and sent["n"] >= self.config.codes_per_window:
                raise ControlError(429, "too_many_codes", "too many codes sent; try again later")
            await tx.execute(
                "INSERT INTO challenges (id, user_id, code_hash, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (challenge_id, user["id"], digest(f"{challenge_id}:{code}"), now, expires),
            )
            await notifier.enqueue(
                tx,
                now,
                user["mobile"],
                "verification_code",
                f"cloudphone: your verification code is {code}. It expires in"
                f" {self.config.code_ttl_s // 60} minutes. Never share it.",
                {"user_id": user["id"], "login": login, "code": code, "challenge": challenge_id},
            )
        self.notices.kick()
        return Challenge(challenge_id, expires, mask_mobile(user["mobile"]))

    async def verify(
        self, challenge_id: Any, code: Any, trust: Any, ip: str, label: str = ""
    ) -> Granted:
        if not isinstance(challenge_id, str) or not isinstance(code, str):
            raise bad_request("invalid_code_format", "challenge and code are strings")
        if not isinstance(trust, bool):
            raise bad_request("invalid_code_format", "trust_browser is true or false")
        now = self.now()
        async with self.store.transaction() as tx:
            ch = await tx.fetchone(
                "SELECT c.*, u.login FROM challenges c JOIN users u ON u.id = c.user_id"
                " WHERE c.id = ?",
                (challenge_id,),
            )
        if ch is None:
            raise ControlError(401, "invalid_challenge", "log in again")
        await self._check_limits(ch["login"], ip, now)
        if ch["used_at"] is not None or ch["expires_at"] <= now:
            raise ControlError(401, "invalid_challenge", STALE)
        if ch["tries"] >= self.config.code_max_tries:
            raise ControlError(401, "invalid_challenge", "too many wrong codes; log in again")
        good = hmac.compare_digest(digest(f"{challenge_id}:{code}"), ch["code_hash"])
        async with self.store.transaction() as tx:
            # The conditional update makes the code single-use even against racing requests.
            changed = await tx.execute(
                "UPDATE challenges SET tries = tries + 1, used_at = ? WHERE id = ?"
                " AND used_at IS NULL AND tries < ?",
                (now if good else None, challenge_id, self.config.code_max_tries),
            )
        if not changed:
            raise ControlError(401, "invalid_challenge", STALE)
        if not good:
            await self._fail(ch["login"], ip, "code", now)
            left = self.config.code_max_tries - ch["tries"] - 1
            raise ControlError(401, "wrong_code", f"wrong code; {left} tries left")
        async with self.store.transaction() as tx:
            user = await tx.fetchone("SELECT * FROM users WHERE id = ?", (ch["user_id"],))
        assert user is not None
        return await self._grant(user, now, trust=trust, label=label)

    async def _grant(self, user: Row, now: int, *, trust: bool, label: str = "") -> Granted:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        expires = now + self.config.session_ttl_s
        device = secrets.token_urlsafe(32) if trust else None
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (digest(token), user["id"], csrf, now, expires),
            )
            if device is not None:
                await tx.execute(
                    "INSERT INTO devices (token_hash, user_id, label, created_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (digest(device), user["id"], label[:120], now, now + self.config.device_ttl_s),
                )
        return Granted(token, csrf, expires, user, device)

    # -- sessions -----------------------------------------------------------------------------

    async def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        now = self.now()
        async with self.store.transaction() as tx:
            row = await tx.fetchone(
                "SELECT s.token_hash, s.csrf, s.expires_at, u.* FROM sessions s"
                " JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?"
                " AND s.revoked_at IS NULL AND s.expires_at > ?",
                (digest(token), now),
            )
        if row is None:
            return None
        return Session(row["token_hash"], row, row["csrf"], row["expires_at"])

    async def logout(self, session: Session) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE sessions SET revoked_at = ? WHERE token_hash = ?",
                (self.now(), session.token_hash),
            )

    async def revoke_sessions(self, user_id: int) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                (self.now(), user_id),
            )

    async def change_password(self, user: Row, old: Any, new: Any) -> None:
        """Change one's own password; every session of the user ends (log in again)."""
        problem = password_problem(new)
        if problem:
            raise bad_request("invalid_password", problem)
        if not isinstance(old, str) or not await verify_password(old, user["password_hash"]):
            raise bad_credentials()
        await self.set_password(user["id"], str(new))

    async def set_password(self, user_id: int, new: str) -> None:
        hashed = await hash_password(new)
        async with self.store.transaction() as tx:
            await tx.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, user_id))
            await tx.execute(
                "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                (self.now(), user_id),
            )

    async def prune(self, now: int) -> None:
        """Forget what can no longer matter: old failures, spent challenges, dead sessions."""
        day = 86400
        async with self.store.transaction() as tx:
            await tx.execute(
                "DELETE FROM auth_failures WHERE at < ?", (now - self.config.fail_window_s - day,)
            )
            await tx.execute("DELETE FROM challenges WHERE expires_at < ?", (now - day,))
            await tx.execute(
                "DELETE FROM sessions WHERE expires_at < ? OR revoked_at < ?",
                (now - day, now - day),
            )

    # -- trusted browsers ---------------------------------------------------------------------

    async def devices(self, user_id: int) -> list[dict[str, Any]]:
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT id, label, created_at, expires_at FROM devices WHERE user_id = ?"
                " AND revoked_at IS NULL AND expires_at > ? ORDER BY id",
                (user_id, self.now()),
            )
        return rows

    async def revoke_devices(self, user_id: int, device_id: int | None = None) -> int:
        sql = "UPDATE devices SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL"
        params: list[Any] = [self.now(), user_id]
        if device_id is not None:
            sql += " AND id = ?"
            params.append(device_id)
        async with self.store.transaction() as tx:
            return await tx.execute(sql, params)


def me_dict(session: Session) -> dict[str, Any]:
    return {
        "user": user_dict(session.user),
        "csrf_token": session.csrf,
        "expires_at": session.expires_at,
    }
