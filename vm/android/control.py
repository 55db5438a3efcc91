"""scrcpy control messages (client → device), serialised byte for byte.

Hand-written: scrcpy documents this protocol only through its own unit tests
(`app/tests/test_control_msg_serialize.c`), whose byte vectors our tests replay. All integers are
big-endian; positions are (i32 x, i32 y, u16 width, u16 height) where width x height must equal
the *current* video size, or the server drops the event (that is how it ignores touches aimed
at a picture from before a rotation).

Also here: DOM `KeyboardEvent.code` → Android keycodes, and splitting text into INJECT_TEXT
messages of at most 300 UTF-8 bytes without cutting a character.
"""

from __future__ import annotations

import enum
import struct

from cloudphone.vm.android.scrcpy_protocol import MAX_MESSAGE_SIZE

INJECT_TEXT_MAX_LENGTH = 300
CLIPBOARD_TEXT_MAX_LENGTH = MAX_MESSAGE_SIZE - 14  # type + sequence + paste flag + length

POINTER_ID_MOUSE = (1 << 64) - 1
POINTER_ID_GENERIC_FINGER = (1 << 64) - 2


class ControlType(enum.IntEnum):
    INJECT_KEYCODE = 0
    INJECT_TEXT = 1
    INJECT_TOUCH_EVENT = 2
    INJECT_SCROLL_EVENT = 3
    BACK_OR_SCREEN_ON = 4
    EXPAND_NOTIFICATION_PANEL = 5
    EXPAND_SETTINGS_PANEL = 6
    COLLAPSE_PANELS = 7
    GET_CLIPBOARD = 8
    SET_CLIPBOARD = 9
    SET_DISPLAY_POWER = 10
    ROTATE_DEVICE = 11
    UHID_CREATE = 12
    UHID_INPUT = 13
    UHID_DESTROY = 14
    OPEN_HARD_KEYBOARD_SETTINGS = 15
    START_APP = 16
    RESET_VIDEO = 17  # server >= 3.0
    CAMERA_SET_TORCH = 18  # 4.x
    CAMERA_ZOOM_IN = 19
    CAMERA_ZOOM_OUT = 20
    RESIZE_DISPLAY = 21


class KeyAction(enum.IntEnum):
    DOWN = 0
    UP = 1


class MotionAction(enum.IntEnum):
    DOWN = 0
    UP = 1
    MOVE = 2
    CANCEL = 3


class CopyKey(enum.IntEnum):
    NONE = 0
    COPY = 1
    CUT = 2


BUTTON_PRIMARY = 1
META_SHIFT_ON = 0x01
META_SHIFT_LEFT_ON = 0x40

# Android keycodes (android/keycodes.h) the edge sends.
KEYCODE_HOME = 3
KEYCODE_BACK = 4
KEYCODE_APP_SWITCH = 187
KEYCODE_ENTER = 66

_NAMED_KEYS: dict[str, int] = {
    "Enter": 66,
    "NumpadEnter": 160,
    "Backspace": 67,
    "Delete": 112,
    "Tab": 61,
    "Space": 62,
    "Escape": 111,
    "ArrowUp": 19,
    "ArrowDown": 20,
    "ArrowLeft": 21,
    "ArrowRight": 22,
    "Home": 122,
    "End": 123,
    "PageUp": 92,
    "PageDown": 93,
    "Insert": 124,
    "ShiftLeft": 59,
    "ShiftRight": 60,
    "ControlLeft": 113,
    "ControlRight": 114,
    "AltLeft": 57,
    "AltRight": 58,
    "MetaLeft": 117,
    "MetaRight": 118,
    "CapsLock": 115,
    "Minus": 69,
    "Equal": 70,
    "BracketLeft": 71,
    "BracketRight": 72,
    "Backslash": 73,
    "Semicolon": 74,
    "Quote": 75,
    "Slash": 76,
    "Comma": 55,
    "Period": 56,
    "Backquote": 68,
    "AudioVolumeUp": 24,
    "AudioVolumeDown": 25,
    "AudioVolumeMute": 164,
    "Power": 26,
    "BrowserBack": 4,
    "BrowserHome": 3,
    "ContextMenu": 82,
}


def android_keycode(code: str) -> int | None:
    """Android keycode for a DOM `KeyboardEvent.code`, or None when there is no equivalent."""
    if len(code) == 4 and code.startswith("Key") and "A" <= code[3] <= "Z":
        return 29 + ord(code[3]) - ord("A")  # AKEYCODE_A = 29
    if len(code) == 6 and code.startswith("Digit") and code[5].isdigit():
        return 7 + int(code[5])  # AKEYCODE_0 = 7
    if code.startswith("Numpad") and len(code) == 7 and code[6].isdigit():
        return 144 + int(code[6])  # AKEYCODE_NUMPAD_0 = 144
    if code.startswith("F") and code[1:].isdigit() and 1 <= int(code[1:]) <= 12:
        return 131 + int(code[1:]) - 1  # AKEYCODE_F1 = 131
    return _NAMED_KEYS.get(code)


def _float_to_u16fp(value: float) -> int:
    """scrcpy's sc_float_to_u16fp: [0, 1] → u16 fixed point, 1.0 saturating at 0xffff."""
    value = min(1.0, max(0.0, value))
    return min(0xFFFF, int(value * 65536.0))


def _float_to_i16fp(value: float) -> int:
    value = min(1.0, max(-1.0, value))
    return max(-0x8000, min(0x7FFF, int(value * 32768.0)))


def _position(x: int, y: int, width: int, height: int) -> bytes:
    if not (0 < width <= 0xFFFF and 0 < height <= 0xFFFF):
        raise ValueError(f"screen size {width}x{height} does not fit the wire format")
    return struct.pack(">iiHH", x, y, width, height)


def utf8_truncate(text: str, max_bytes: int) -> bytes:
    """UTF-8 of `text`, cut to at most `max_bytes` without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return raw
    end = max_bytes
    while end > 0 and (raw[end] & 0xC0) == 0x80:  # raw[end] is a continuation byte
        end -= 1
    return raw[:end]


def _string(text: str, max_bytes: int) -> bytes:
    raw = utf8_truncate(text, max_bytes)
    return struct.pack(">I", len(raw)) + raw


def inject_keycode(action: KeyAction, keycode: int, repeat: int = 0, metastate: int = 0) -> bytes:
    return struct.pack(">BBIII", ControlType.INJECT_KEYCODE, action, keycode, repeat, metastate)


def inject_text(text: str) -> bytes:
    """One INJECT_TEXT message; text beyond 300 bytes is cut (use `split_text` first)."""
    return bytes([ControlType.INJECT_TEXT]) + _string(text, INJECT_TEXT_MAX_LENGTH)


def split_text(text: str, max_bytes: int = INJECT_TEXT_MAX_LENGTH) -> list[str]:
    """Split text into pieces of at most `max_bytes` UTF-8 bytes, on character boundaries."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > max_bytes and current:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(ch)
        size += n
    if current:
        pieces.append("".join(current))
    return pieces


def inject_touch_event(
    action: MotionAction,
    pointer_id: int,
    x: int,
    y: int,
    width: int,
    height: int,
    pressure: float = 1.0,
    action_button: int = 0,
    buttons: int = 0,
) -> bytes:
    return (
        struct.pack(">BBQ", ControlType.INJECT_TOUCH_EVENT, action, pointer_id & ((1 << 64) - 1))
        + _position(x, y, width, height)
        + struct.pack(">HII", _float_to_u16fp(pressure), action_button, buttons)
    )


def inject_scroll_event(
    x: int,
    y: int,
    width: int,
    height: int,
    hscroll: float,
    vscroll: float,
    buttons: int = 0,
    scroll_range: float = 16.0,
) -> bytes:
    """Scroll; `scroll_range` is `ServerVersion.scroll_range` (16 since 3.3.1, 1 before)."""
    h = _float_to_i16fp(hscroll / scroll_range)
    v = _float_to_i16fp(vscroll / scroll_range)
    return (
        bytes([ControlType.INJECT_SCROLL_EVENT])
        + _position(x, y, width, height)
        + struct.pack(">hhI", h, v, buttons)
    )


def back_or_screen_on(action: KeyAction) -> bytes:
    return bytes([ControlType.BACK_OR_SCREEN_ON, action])


def get_clipboard(copy_key: CopyKey = CopyKey.NONE) -> bytes:
    return bytes([ControlType.GET_CLIPBOARD, copy_key])


def set_clipboard(sequence: int, text: str, paste: bool = False) -> bytes:
    return struct.pack(">BQB", ControlType.SET_CLIPBOARD, sequence, int(paste)) + _string(
        text, CLIPBOARD_TEXT_MAX_LENGTH
    )


def set_display_power(on: bool) -> bytes:
    return bytes([ControlType.SET_DISPLAY_POWER, int(on)])


def simple(kind: ControlType) -> bytes:
    """Messages that are only a type byte: panels, ROTATE_DEVICE, RESET_VIDEO, camera zoom."""
    if kind not in _EMPTY:
        raise ValueError(f"{kind.name} carries a payload")
    return bytes([kind])


_EMPTY = frozenset(
    {
        ControlType.EXPAND_NOTIFICATION_PANEL,
        ControlType.EXPAND_SETTINGS_PANEL,
        ControlType.COLLAPSE_PANELS,
        ControlType.ROTATE_DEVICE,
        ControlType.OPEN_HARD_KEYBOARD_SETTINGS,
        ControlType.RESET_VIDEO,
        ControlType.CAMERA_ZOOM_IN,
        ControlType.CAMERA_ZOOM_OUT,
    }
)


def rotate_device() -> bytes:
    return simple(ControlType.ROTATE_DEVICE)


def reset_video() -> bytes:
    return simple(ControlType.RESET_VIDEO)


def uhid_create(
    id: int, report_desc: bytes, name: str = "", vendor_id: int = 0, product_id: int = 0
) -> bytes:
    raw_name = utf8_truncate(name, 127)
    return (
        struct.pack(">BHHHB", ControlType.UHID_CREATE, id, vendor_id, product_id, len(raw_name))
        + raw_name
        + struct.pack(">H", len(report_desc))
        + report_desc
    )


def uhid_input(id: int, data: bytes) -> bytes:
    return struct.pack(">BHH", ControlType.UHID_INPUT, id, len(data)) + data


def uhid_destroy(id: int) -> bytes:
    return struct.pack(">BH", ControlType.UHID_DESTROY, id)


def start_app(name: str) -> bytes:
    raw = utf8_truncate(name, 255)
    return bytes([ControlType.START_APP, len(raw)]) + raw


def camera_set_torch(on: bool) -> bytes:
    return bytes([ControlType.CAMERA_SET_TORCH, int(on)])


def resize_display(width: int, height: int) -> bytes:
    return struct.pack(">BHH", ControlType.RESIZE_DISPLAY, width, height)
