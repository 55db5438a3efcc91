"""The signaling protocol, version 1: JSON text frames over the `/ws` WebSocket.

Client -> server: `hello {token, instance, role}`, `answer {sdp}`,
`candidate {candidate, sdpMid, sdpMLineIndex}`, `bye`.
Server -> client: `welcome {session, iceServers, screen, capabilities, codec}`, `offer {sdp}`,
`error {code, message, fatal}`, `bye {reason}`.

Validation is strict on purpose: unknown types, missing or extra fields and wrong types are
refused with an `error` that names the problem, so a buggy client learns at once and a hostile
one gets nothing but that error. This module knows nothing of guests or WebRTC.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
ROLES = ("owner", "controller", "viewer")
CODEC_CHOICES = ("auto", "h264", "vp8")


class ErrorCode(enum.StrEnum):
    BAD_JSON = "bad-json"
    BAD_MESSAGE = "bad-message"
    UNKNOWN_TYPE = "unknown-type"
    UNSUPPORTED_VERSION = "unsupported-version"
    TOO_LARGE = "too-large"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    UNKNOWN_INSTANCE = "unknown-instance"
    BAD_STATE = "bad-state"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    """WebSocket close codes: standard ones plus 4xxx for application reasons."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    POLICY = 1008
    TOO_LARGE = 1009
    INTERNAL = 1011
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    TIMEOUT = 4408
    RELEASED = 4410


class ProtocolError(Exception):
    """A message that breaks the protocol; `code` goes back to the client as-is."""

    def __init__(self, code: ErrorCode, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal


@dataclass(frozen=True, slots=True)
class Hello:
    instance: str
    role: str = "owner"
    token: str | None = None
    codec: str = "auto"


@dataclass(frozen=True, slots=True)
class Answer:
    sdp: str


@dataclass(frozen=True, slots=True)
class Candidate:
    candidate: str  # "" marks the end of candidates
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True, slots=True)
class Bye:
    reason: str = ""


ClientMessage = Hello | Answer | Candidate | Bye

# type -> (required fields with types, optional fields with types)
_SCHEMAS: dict[str, tuple[dict[str, tuple[type, ...]], dict[str, tuple[type, ...]]]] = {
    "hello": ({"instance": (str,)}, {"token": (str, type(None)), "role": (str,), "codec": (str,)}),
    "answer": ({"sdp": (str,)}, {}),
    "candidate": (
        {"candidate": (str,)},
        {
            "sdpMid": (str, type(None)),
            "sdpMLineIndex": (int, type(None)),
            "usernameFragment": (str, type(None)),
        },
    ),
    "bye": ({}, {"reason": (str,)}),
}


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Decode and validate one client frame; raises `ProtocolError` with a precise reason."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}",
            fatal=True,
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "a message must be a JSON object")
    version = data.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version!r} not supported; use 1",
            fatal=True,
        )
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "missing string field 'type'")
    schema = _SCHEMAS.get(kind)
    if schema is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}")
    required, optional = schema
    _check_fields(kind, data, required, optional)
    if kind == "hello":
        role = data.get("role", "owner")
        if role not in ROLES:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"role must be one of {', '.join(ROLES)}")
        codec = data.get("codec", "auto")
        if codec not in CODEC_CHOICES:
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE, f"codec must be one of {', '.join(CODEC_CHOICES)}"
            )
        instance = data["instance"]
        if not instance or len(instance) > 128:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "instance must be 1..128 characters")
        return Hello(instance=instance, role=role, token=data.get("token"), codec=codec)
    if kind == "answer":
        if not data["sdp"].startswith("v=0"):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "sdp is not a session description")
        return Answer(sdp=data["sdp"])
    if kind == "candidate":
        index = data.get("sdpMLineIndex")
        if index is not None and index < 0:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "sdpMLineIndex must be >= 0")
        return Candidate(data["candidate"], data.get("sdpMid"), index)
    return Bye(reason=data.get("reason", ""))


def _check_fields(
    kind: str,
    data: dict[str, Any],
    required: dict[str, tuple[type, ...]],
    optional: dict[str, tuple[type, ...]],
) -> None:
    for name, types in required.items():
        if name not in data:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{kind}: missing field {name!r}")
        _check_type(kind, name, data[name], types)
    for name, types in optional.items():
        if name in data:
            _check_type(kind, name, data[name], types)
    extra = set(data) - set(required) - set(optional) - {"type", "v"}
    if extra:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{kind}: unexpected field(s) {sorted(extra)}")


def _check_type(kind: str, name: str, value: Any, types: tuple[type, ...]) -> None:
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{kind}: field {name!r} must be {names}")


def message(kind: str, **fields: Any) -> str:
    """Encode a server message."""
    return json.dumps({"v": PROTOCOL_VERSION, "type": kind, **fields}, separators=(",", ":"))


def error_message(code: ErrorCode, text: str, *, fatal: bool = False) -> str:
    return message("error", code=str(code), message=text, fatal=fatal)
