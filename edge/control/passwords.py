"""Password hashing with scrypt (memory-hard), a per-user salt, and the parameters in the hash.

scrypt takes tens of milliseconds and 16 MiB on purpose, so it always runs in a worker thread;
checking an unknown account hashes against a dummy so both answers take the same time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets

N, R, P = 2**14, 8, 1
MAXMEM = 64 * 1024 * 1024
MIN_LENGTH = 8
MAX_LENGTH = 256


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _hash_sync(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=32)


def hash_password_sync(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _hash_sync(password, salt, N, R, P)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password_sync(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = _hash_sync(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


_DUMMY = hash_password_sync(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, hash_password_sync, password)


async def verify_password(password: str, stored: str | None) -> bool:
    """True when `password` matches; `stored=None` (no such user) costs the same and is False."""
    loop = asyncio.get_running_loop()
    ok = await loop.run_in_executor(None, verify_password_sync, password, stored or _DUMMY)
    return ok and stored is not None


def password_problem(password: object) -> str | None:
    """Why a new password is unacceptable, or None."""
    if not isinstance(password, str):
        return "password must be a string"
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        return f"password must be {MIN_LENGTH}..{MAX_LENGTH} characters"
    return None
