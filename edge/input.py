"""Validation of the `input` data channel: untrusted JSON in, typed guest input events out.

Every message is checked before it gets near a guest: types, ranges (coordinates are 0..1 of
the displayed screen), pointer ids, text length. A bad message raises `InputError`, which the
session reports back on the same channel; the guest never sees it.

Wire format (one JSON object per message, `seq` optional and increasing):
`{"type":"touch","a":"down|move|up|cancel","id":0..9,"x":0..1,"y":0..1,"p":0..1,"seq":n}`,
`{"type":"key","a":"down|up|press","code":"KeyA","shift":false,"seq":n}`,
`{"type":"text","s":"hello","seq":n}`, `{"type":"nav","k":"back|home|recents","seq":n}`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from cloudphone.vm.guest import (
    KEY_ACTIONS,
    NAV_KEYS,
    TOUCH_ACTIONS,
    InputEvent,
    KeyEvent,
    NavEvent,
    TextEvent,
    TouchEvent,
)

MAX_INPUT_BYTES = 16 * 1024
MAX_TEXT_CHARS = 4096
MAX_POINTERS = 10
_KEY_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,31}$")

_FIELDS: dict[str, set[str]] = {
    "touch": {"a", "id", "x", "y", "p"},
    "key": {"a", "code", "shift"},
    "text": {"s"},
    "nav": {"k"},
}
_REQUIRED: dict[str, set[str]] = {
    "touch": {"a", "id", "x", "y"},
    "key": {"a", "code"},
    "text": {"s"},
    "nav": {"k"},
}


class InputError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_input(raw: str | bytes) -> InputEvent:
    """Decode and validate one `input` channel message."""
    if len(raw) > MAX_INPUT_BYTES:
        raise InputError("too-large", f"input message over {MAX_INPUT_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InputError("bad-json", "input message is not valid JSON") from None
    if not isinstance(data, dict):
        raise InputError("bad-message", "input message must be a JSON object")
    kind = data.get("type")
    if kind not in _FIELDS:
        raise InputError("unknown-type", f"unknown input type {kind!r}")
    missing = _REQUIRED[kind] - set(data)
    if missing:
        raise InputError("bad-message", f"{kind}: missing field(s) {sorted(missing)}")
    extra = set(data) - _FIELDS[kind] - {"type", "seq"}
    if extra:
        raise InputError("bad-message", f"{kind}: unexpected field(s) {sorted(extra)}")
    seq = data.get("seq", 0)
    if not _is_int(seq) or not 0 <= seq < 2**31:
        raise InputError("bad-message", "seq must be an integer 0..2^31-1")
    if kind == "touch":
        action = data["a"]
        if action not in TOUCH_ACTIONS:
            raise InputError("bad-message", f"touch: a must be one of {TOUCH_ACTIONS}")
        pointer = data["id"]
        if not _is_int(pointer) or not 0 <= pointer < MAX_POINTERS:
            raise InputError("out-of-range", f"touch: id must be an integer 0..{MAX_POINTERS - 1}")
        x, y = _unit(data, "x"), _unit(data, "y")
        pressure = _unit(data, "p") if "p" in data else 1.0
        return TouchEvent(action, pointer, x, y, pressure, seq)
    if kind == "key":
        action, code = data["a"], data["code"]
        if action not in KEY_ACTIONS:
            raise InputError("bad-message", f"key: a must be one of {KEY_ACTIONS}")
        if not isinstance(code, str) or not _KEY_CODE.match(code):
            raise InputError("bad-message", "key: code must be a KeyboardEvent.code name")
        shift = data.get("shift", False)
        if not isinstance(shift, bool):
            raise InputError("bad-message", "key: shift must be a boolean")
        return KeyEvent(action, code, shift, seq)
    if kind == "text":
        text = data["s"]
        if not isinstance(text, str) or not text:
            raise InputError("bad-message", "text: s must be a non-empty string")
        if len(text) > MAX_TEXT_CHARS:
            raise InputError("too-large", f"text: at most {MAX_TEXT_CHARS} characters")
        return TextEvent(text, seq)
    key = data["k"]
    if key not in NAV_KEYS:
        raise InputError("bad-message", f"nav: k must be one of {NAV_KEYS}")
    return NavEvent(key, seq)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unit(data: dict[str, Any], name: str) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError("bad-message", f"{name} must be a number")
    if not 0.0 <= value <= 1.0:
        raise InputError("out-of-range", f"{name}={value} is outside 0..1")
    return float(value)
