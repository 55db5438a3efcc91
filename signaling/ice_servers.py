"""ICE server configuration handed to browsers and to our own peer connections.

Always explicit: aiortc falls back to a public Google STUN server when given none, which a
loopback-only or air-gapped edge must never contact. TURN servers (coturn) use the TURN REST
scheme ("use-auth-secret"): a time-limited username `expiry:user` and an HMAC-SHA1 credential,
so no long-lived TURN password ever reaches a browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN/TURN entry, as in the W3C `RTCIceServer` dictionary."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    @property
    def is_turn(self) -> bool:
        return any(url.startswith(("turn:", "turns:")) for url in self.urls)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True, slots=True)
class TurnRestConfig:
    """coturn `static-auth-secret`: credentials are minted per session and expire."""

    urls: tuple[str, ...]
    secret: str
    ttl_s: int = 3600


@dataclass(frozen=True, slots=True)
class IceConfig:
    servers: tuple[IceServer, ...] = ()
    turn_rest: TurnRestConfig | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def for_session(self, user: str, now: float | None = None) -> list[IceServer]:
        """The servers for one session, with fresh TURN REST credentials when configured."""
        servers = list(self.servers)
        if self.turn_rest is not None:
            servers.append(turn_rest_credentials(self.turn_rest, user, now))
        return servers


def turn_rest_credentials(config: TurnRestConfig, user: str, now: float | None = None) -> IceServer:
    expiry = int((time.time() if now is None else now) + config.ttl_s)
    username = f"{expiry}:{user}"
    digest = hmac.new(config.secret.encode(), username.encode(), hashlib.sha1).digest()
    return IceServer(config.urls, username, base64.b64encode(digest).decode())


def parse_ice_urls(urls: Sequence[str]) -> tuple[IceServer, ...]:
    """`stun:host:port` strings (no credentials) into `IceServer`s, validating the scheme."""
    out = []
    for url in urls:
        if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
            raise ValueError(f"not an ICE server URL: {url!r}")
        out.append(IceServer((url,)))
    return tuple(out)
