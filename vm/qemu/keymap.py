"""Key maps: DOM `KeyboardEvent.code`, typed characters and nav buttons → QEMU `QKeyCode`s.

QMP `input-send-event` takes QEMU's own key names (qapi `QKeyCode`), which QEMU translates to
evdev codes for virtio-keyboard. Text from the page is typed as key strokes on a US layout
(the guest's layout), so shifted symbols become shift + key. Characters a US keyboard cannot
type are reported back as unmapped rather than guessed.
"""

from __future__ import annotations

from cloudphone.vm.guest import NavKey

_NAMED: dict[str, str] = {
    "Enter": "ret",
    "NumpadEnter": "kp_enter",
    "Escape": "esc",
    "Backspace": "backspace",
    "Tab": "tab",
    "Space": "spc",
    "Minus": "minus",
    "Equal": "equal",
    "BracketLeft": "bracket_left",
    "BracketRight": "bracket_right",
    "Backslash": "backslash",
    "Semicolon": "semicolon",
    "Quote": "apostrophe",
    "Backquote": "grave_accent",
    "Comma": "comma",
    "Period": "dot",
    "Slash": "slash",
    "CapsLock": "caps_lock",
    "ShiftLeft": "shift",
    "ShiftRight": "shift_r",
    "ControlLeft": "ctrl",
    "ControlRight": "ctrl_r",
    "AltLeft": "alt",
    "AltRight": "alt_r",
    "MetaLeft": "meta_l",
    "MetaRight": "meta_r",
    "ContextMenu": "menu",
    "ArrowUp": "up",
    "ArrowDown": "down",
    "ArrowLeft": "left",
    "ArrowRight": "right",
    "Home": "home",
    "End": "end",
    "PageUp": "pgup",
    "PageDown": "pgdn",
    "Insert": "insert",
    "Delete": "delete",
    "BrowserBack": "ac_back",
    "BrowserHome": "ac_home",
    "BrowserForward": "ac_forward",
    "BrowserRefresh": "ac_refresh",
    "AudioVolumeUp": "volumeup",
    "AudioVolumeDown": "volumedown",
    "AudioVolumeMute": "audiomute",
    "Power": "power",
}

#: DOM code → qcode, for every key the edge forwards.
DOM_TO_QCODE: dict[str, str] = {
    **{f"Key{c}": c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    **{f"Digit{d}": d for d in "0123456789"},
    **{f"Numpad{d}": f"kp_{d}" for d in "0123456789"},
    **{f"F{n}": f"f{n}" for n in range(1, 13)},
    **_NAMED,
}

#: Nav buttons → keys the recipe guest (and Android's Generic.kl) understand:
#: KEY_BACK, KEY_HOMEPAGE, KEY_COMPOSE (Android: MENU, used as recents/app switch).
NAV_TO_QCODE: dict[NavKey, str] = {"back": "ac_back", "home": "ac_home", "recents": "compose"}

_UNSHIFTED = "`1234567890-=[]\\;',./"
_SHIFTED = '~!@#$%^&*()_+{}|:"<>?'
_PUNCT_QCODE = {
    "`": "grave_accent",
    "-": "minus",
    "=": "equal",
    "[": "bracket_left",
    "]": "bracket_right",
    "\\": "backslash",
    ";": "semicolon",
    "'": "apostrophe",
    ",": "comma",
    ".": "dot",
    "/": "slash",
}


def _char_map() -> dict[str, tuple[str, bool]]:
    table: dict[str, tuple[str, bool]] = {" ": ("spc", False), "\n": ("ret", False)}
    table["\t"] = ("tab", False)
    for c in "abcdefghijklmnopqrstuvwxyz":
        table[c] = (c, False)
        table[c.upper()] = (c, True)
    for plain, shifted in zip(_UNSHIFTED, _SHIFTED, strict=True):
        qcode = plain if plain.isdigit() else _PUNCT_QCODE[plain]
        table[plain] = (qcode, False)
        table[shifted] = (qcode, True)
    return table


#: Typed character → (qcode, needs shift), US layout.
CHAR_TO_QCODE: dict[str, tuple[str, bool]] = _char_map()


def qcode_for_dom(code: str) -> str | None:
    """The qcode for a DOM `KeyboardEvent.code`, or None when the guest has no such key."""
    return DOM_TO_QCODE.get(code)


def strokes_for_text(text: str) -> tuple[list[tuple[str, bool]], str]:
    """Key strokes (qcode, shift) typing `text`, and the characters that could not be mapped."""
    strokes: list[tuple[str, bool]] = []
    unmapped: list[str] = []
    for ch in text:
        stroke = CHAR_TO_QCODE.get(ch)
        if stroke is None:
            unmapped.append(ch)
        else:
            strokes.append(stroke)
    return strokes, "".join(unmapped)
