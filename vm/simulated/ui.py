"""The simulated phone's user interface: home screen, apps, navigation, drawn with numpy.

A small but honest phone: a status bar with a clock, a home screen of app icons, a "Touch" app
that draws every finger's trail, a "Notes" app that shows typed text, a recents screen, and the
back / home / recents navigation bar. Everything here runs on the phone's render thread only;
the loop never touches this state, so it needs no locks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from cloudphone.vm.guest import InputEvent, KeyEvent, NavEvent, TextEvent, TouchEvent
from cloudphone.vm.simulated.canvas import (
    Colour,
    blit,
    disc,
    fill,
    rounded_sprite,
    stroke,
    text_sprite,
)
from cloudphone.vm.stamp import draw_stamp, strip_height

BACKGROUND: Colour = (18, 22, 33)
BAR: Colour = (8, 10, 16)
WHITE: Colour = (240, 240, 245)
GREY: Colour = (140, 146, 160)
PAPER: Colour = (250, 248, 240)
INK: Colour = (30, 30, 36)
FINGER_COLOURS: tuple[Colour, ...] = (
    (255, 87, 87),
    (87, 200, 255),
    (120, 230, 120),
    (255, 200, 60),
    (200, 120, 255),
    (255, 140, 200),
    (80, 230, 210),
    (255, 160, 90),
    (170, 170, 255),
    (220, 220, 120),
)

APPS: tuple[tuple[str, Colour], ...] = (
    ("Touch", (231, 76, 60)),
    ("Notes", (241, 196, 15)),
    ("Dialer", (46, 204, 113)),
    ("Messages", (52, 152, 219)),
    ("Camera", (155, 89, 182)),
    ("Clock", (26, 188, 156)),
    ("Files", (230, 126, 34)),
    ("Settings", (127, 140, 141)),
)

# Key codes (DOM `KeyboardEvent.code`) the notes app understands besides letters and digits.
_PUNCTUATION = {
    "Space": (" ", " "),
    "Minus": ("-", "_"),
    "Equal": ("=", "+"),
    "Comma": (",", "<"),
    "Period": (".", ">"),
    "Slash": ("/", "?"),
    "Semicolon": (";", ":"),
    "Quote": ("'", '"'),
    "BracketLeft": ("[", "{"),
    "BracketRight": ("]", "}"),
    "Backslash": ("\\", "|"),
    "Backquote": ("`", "~"),
}
_SHIFTED_DIGITS = ")!@#$%^&*("


def key_to_char(code: str, shift: bool) -> str | None:
    """The character a key produces on a US layout, or None for a non-printing key."""
    if code.startswith("Key") and len(code) == 4:
        return code[3].upper() if shift else code[3].lower()
    if code.startswith("Digit") and len(code) == 6:
        return _SHIFTED_DIGITS[int(code[5])] if shift else code[5]
    pair = _PUNCTUATION.get(code)
    if pair:
        return pair[1] if shift else pair[0]
    return None


@dataclass
class Layout:
    """Pixel geometry derived from the screen size (designed at 720x1280)."""

    width: int
    height: int
    unit: float = field(init=False)
    status_h: int = field(init=False)
    nav_h: int = field(init=False)

    def __post_init__(self) -> None:
        self.unit = min(self.width / 720, self.height / 1280)
        self.status_h = round(56 * self.unit)
        self.nav_h = round(96 * self.unit)

    def u(self, value: float) -> int:
        return round(value * self.unit)

    @property
    def content_top(self) -> int:
        return self.status_h

    @property
    def content_bottom(self) -> int:
        return self.height - self.nav_h

    def nav_button_at(self, x: int, y: int) -> str | None:
        if y < self.content_bottom:
            return None
        third = self.width / 3
        return ("back", "home", "recents")[min(2, int(x / third))]

    def action_button(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the Call / Send button of the dialer and messages apps."""
        top = self.content_top
        return self.u(160), top + self.u(420), self.width - self.u(160), top + self.u(520)

    def corner_button(self, x: int, y: int) -> bool:
        """The top-right text button of an app (Touch: Clear, Notes: Copy)."""
        return x > self.width - self.u(140) and self.content_top < y < self.content_top + self.u(70)

    def icon_rects(self) -> list[tuple[str, int, int, int, int]]:
        """(app name, x0, y0, x1, y1) of every icon on the home screen."""
        size = self.u(120)
        cols = 4
        gap = (self.width - cols * size) // (cols + 1)
        rects = []
        for i, (name, _) in enumerate(APPS):
            col, row = i % cols, i // cols
            x0 = gap + col * (size + gap)
            y0 = self.content_top + self.u(190) + row * self.u(200)
            rects.append((name, x0, y0, x0 + size, y0 + size))
        return rects


@dataclass
class TouchApp:
    """Draws each finger's trail; shows how many fingers are down."""

    layout: Layout
    canvas: np.ndarray = field(init=False)
    fingers: dict[int, tuple[int, int]] = field(default_factory=dict)
    strokes: int = 0
    # Row bands changed since the last frame; None means everything.
    damage: list[tuple[int, int]] | None = None

    def __post_init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        lay = self.layout
        self.canvas = np.zeros((lay.height, lay.width, 3), np.uint8)
        self.canvas[:] = (12, 14, 20)
        self.fingers.clear()
        self.strokes = 0
        self.damage = None

    def _damage_rows(self, y0: int, y1: int) -> None:
        if self.damage is not None:
            self.damage.append((y0, y1))

    def touch(self, event: TouchEvent, x: int, y: int) -> None:
        colour = FINGER_COLOURS[event.pointer_id % len(FINGER_COLOURS)]
        radius = self.layout.u(9)
        ring = self.layout.u(34) + 2
        top = self.layout.content_top
        self._damage_rows(top, top + self.layout.u(70))  # the counters in the label
        previous = self.fingers.get(event.pointer_id)
        low, high = (y, y) if previous is None else (min(previous[1], y), max(previous[1], y))
        self._damage_rows(low - ring, high + ring + 1)
        if event.action == "down":
            self.fingers[event.pointer_id] = (x, y)
            self.strokes += 1
            disc(self.canvas, x, y, radius, colour)
        elif event.action == "move" and event.pointer_id in self.fingers:
            px, py = self.fingers[event.pointer_id]
            stroke(self.canvas, px, py, x, y, radius, colour)
            self.fingers[event.pointer_id] = (x, y)
        elif event.action in ("up", "cancel"):
            self.fingers.pop(event.pointer_id, None)

    def draw(self, frame: np.ndarray) -> None:
        lay = self.layout
        top, bottom = lay.content_top, lay.content_bottom
        frame[top:bottom] = self.canvas[top:bottom]
        label = f"Touch  ·  {len(self.fingers)} finger(s)  ·  {self.strokes} stroke(s)"
        blit(frame, text_sprite(label, lay.u(26), GREY), lay.u(24), top + lay.u(16))
        blit(frame, text_sprite("Clear", lay.u(26), WHITE), lay.width - lay.u(110), top + lay.u(16))
        for pid, (x, y) in self.fingers.items():
            colour = FINGER_COLOURS[pid % len(FINGER_COLOURS)]
            disc(frame, x, y, lay.u(34), colour)
            disc(frame, x, y, lay.u(28), (12, 14, 20))
            disc(frame, x, y, lay.u(10), colour)

    def is_clear_button(self, x: int, y: int) -> bool:
        lay = self.layout
        return x > lay.width - lay.u(140) and lay.content_top < y < lay.content_top + lay.u(70)


@dataclass
class NotesApp:
    """A note that shows typed text, wrapped, with a cursor."""

    layout: Layout
    text: str = ""

    def type_text(self, text: str) -> None:
        self.text = (self.text + text)[-4000:]

    def key(self, event: KeyEvent) -> None:
        if event.action == "up":
            return
        if event.code == "Backspace":
            self.text = self.text[:-1]
        elif event.code in ("Enter", "NumpadEnter"):
            self.type_text("\n")
        else:
            char = key_to_char(event.code, event.shift)
            if char:
                self.type_text(char)

    def lines(self, max_chars: int) -> list[str]:
        out: list[str] = []
        for paragraph in self.text.split("\n"):
            while len(paragraph) > max_chars:
                cut = paragraph.rfind(" ", 0, max_chars)
                cut = cut if cut > 0 else max_chars
                out.append(paragraph[:cut])
                paragraph = paragraph[cut:].lstrip(" ")
            out.append(paragraph)
        return out

    def draw(self, frame: np.ndarray) -> None:
        lay = self.layout
        top, bottom = lay.content_top, lay.content_bottom
        fill(frame, 0, top, lay.width, bottom, PAPER)
        blit(frame, text_sprite("Notes", lay.u(40), INK), lay.u(28), top + lay.u(20))
        blit(frame, text_sprite("Copy", lay.u(26), INK), lay.width - lay.u(110), top + lay.u(16))
        size = lay.u(34)
        line_h = round(size * 1.35)
        y = top + lay.u(100)
        lines = self.lines(max_chars=max(8, int(lay.width / (size * 0.56))))
        visible = max(1, (bottom - y - lay.u(20)) // line_h)
        for line in lines[-visible:]:
            if line:
                blit(frame, text_sprite(line, size, INK), lay.u(28), y)
            y += line_h
        last = lines[-1] if lines else ""
        cursor_x = lay.u(28) + (text_sprite(last, size, INK).shape[1] if last else 0) + 2
        fill(frame, cursor_x, y - line_h, cursor_x + lay.u(3), y - line_h + size, (52, 152, 219))


# Characters the dialer accepts from the keyboard or the text box.
DIAL_CHARS = frozenset("0123456789+*# ")


def _draw_button(frame: np.ndarray, lay: Layout, label: str, colour: Colour) -> None:
    x0, y0, x1, y1 = lay.action_button()
    blit(frame, rounded_sprite(x1 - x0, y1 - y0, lay.u(24), colour), x0, y0)
    sprite = text_sprite(label, lay.u(40), WHITE)
    sx, sy = x0 + (x1 - x0 - sprite.shape[1]) // 2, y0 + (y1 - y0 - sprite.shape[0]) // 2
    blit(frame, sprite, sx, sy)


@dataclass
class DialerApp:
    """Type a number, tap Call: the phone asks the user's real handset to dial it."""

    layout: Layout
    number: str = ""
    status: str = ""

    def type_text(self, text: str) -> None:
        self.number = (self.number + "".join(c for c in text if c in DIAL_CHARS))[-24:]

    def key(self, event: KeyEvent) -> None:
        if event.action == "up":
            return
        if event.code == "Backspace":
            self.number = self.number[:-1]
        else:
            char = key_to_char(event.code, event.shift)
            if char:
                self.type_text(char)

    def draw(self, frame: np.ndarray) -> None:
        lay = self.layout
        top = lay.content_top
        fill(frame, 0, top, lay.width, lay.content_bottom, (16, 40, 28))
        blit(frame, text_sprite("Dialer", lay.u(40), WHITE), lay.u(28), top + lay.u(20))
        shown = self.number or "enter a number"
        blit(frame, text_sprite(shown, lay.u(52), WHITE), lay.u(40), top + lay.u(200))
        _draw_button(frame, lay, "Call", (46, 204, 113))
        if self.status:
            blit(frame, text_sprite(self.status, lay.u(28), GREY), lay.u(40), top + lay.u(580))


@dataclass
class MessagesApp:
    """A recipient and a message; Enter moves from the number to the text; Send asks the
    user's handset to send it."""

    layout: Layout
    to: str = ""
    body: str = ""
    field: str = "to"  # "to" | "body"
    status: str = ""

    def type_text(self, text: str) -> None:
        for char in text:
            if char == "\n":
                self.field = "body"
            elif self.field == "to":
                if char in DIAL_CHARS:
                    self.to = (self.to + char)[-24:]
            else:
                self.body = (self.body + char)[-500:]

    def key(self, event: KeyEvent) -> None:
        if event.action == "up":
            return
        if event.code == "Backspace":
            if self.field == "body" and self.body:
                self.body = self.body[:-1]
            elif self.field == "body":
                self.field = "to"
            else:
                self.to = self.to[:-1]
        elif event.code in ("Enter", "NumpadEnter"):
            self.field = "body"
        else:
            char = key_to_char(event.code, event.shift)
            if char:
                self.type_text(char)

    def draw(self, frame: np.ndarray) -> None:
        lay = self.layout
        top = lay.content_top
        fill(frame, 0, top, lay.width, lay.content_bottom, (20, 32, 52))
        blit(frame, text_sprite("Messages", lay.u(40), WHITE), lay.u(28), top + lay.u(20))
        to_colour = WHITE if self.field == "to" else GREY
        body_colour = WHITE if self.field == "body" else GREY
        to_line = text_sprite(f"To: {self.to}", lay.u(36), to_colour)
        blit(frame, to_line, lay.u(40), top + lay.u(130))
        body_line = text_sprite(self.body[-40:] or "message", lay.u(32), body_colour)
        blit(frame, body_line, lay.u(40), top + lay.u(230))
        _draw_button(frame, lay, "Send", (52, 152, 219))
        if self.status:
            blit(frame, text_sprite(self.status, lay.u(28), GREY), lay.u(40), top + lay.u(580))


@dataclass
class PlainApp:
    """Stand-in screen for apps that have no behaviour yet: shows its name."""

    layout: Layout
    name: str
    colour: Colour

    def draw(self, frame: np.ndarray) -> None:
        lay = self.layout
        fill(frame, 0, lay.content_top, lay.width, lay.content_bottom, self.colour)
        sprite = text_sprite(self.name, lay.u(56), WHITE)
        blit(frame, sprite, (lay.width - sprite.shape[1]) // 2, lay.height // 2 - lay.u(60))


class PhoneUI:
    """All screens plus navigation; `apply` takes input, `render` makes a frame."""

    def __init__(self, width: int, height: int) -> None:
        self.layout = Layout(width, height)
        self.current = "home"  # "home", "recents" or an app name
        self.recents: list[str] = []
        self.touch_app = TouchApp(self.layout)
        self.notes = NotesApp(self.layout)
        self.dialer = DialerApp(self.layout)
        self.messages = MessagesApp(self.layout)
        # Requests for the guest to send out, drained by the phone after each frame:
        # ("dial", number, ""), ("sms", number, body), ("clipboard", text, "").
        self.outbox: list[tuple[str, str, str]] = []
        self._pressed: dict[int, tuple[int, int]] = {}
        self._home = self._draw_home_background()
        self._plain_apps: dict[str, PlainApp] = {}
        self._status_clock = ""
        self._status_bar = np.empty((0, width, 3), np.uint8)
        self._nav_bar = self._paint_nav_bar()
        self._last_view: tuple[object, ...] | None = None
        #: Row bands that differ from the previous render (None: the whole screen).
        self.last_damage: tuple[tuple[int, int], ...] | None = None

    # -- input -----------------------------------------------------------------------------

    def apply(self, event: InputEvent) -> None:
        if isinstance(event, TouchEvent):
            self._touch(event)
        elif isinstance(event, NavEvent):
            self.navigate(event.key)
        elif isinstance(event, TextEvent):
            app = self._text_app()
            if app is not None:
                app.type_text(event.text)
        elif isinstance(event, KeyEvent):
            if event.code in ("Escape", "BrowserBack") and event.action != "up":
                self.navigate("back")
            else:
                app = self._text_app()
                if app is not None:
                    app.key(event)

    def _text_app(self) -> NotesApp | DialerApp | MessagesApp | None:
        if self.current == "Notes":
            return self.notes
        if self.current == "Dialer":
            return self.dialer
        if self.current == "Messages":
            return self.messages
        return None

    def telephony_result(self, kind: str, number: str, result: str) -> None:
        """The edge's answer to a dial / SMS request, shown in the app that made it."""
        app = self.dialer if kind == "dial" else self.messages
        app.status = f"{'Call' if kind == 'dial' else 'SMS'} {number}: {result}"

    def open(self, app: str) -> None:
        self.current = app
        if app in self.recents:
            self.recents.remove(app)
        self.recents.insert(0, app)
        del self.recents[6:]

    def navigate(self, key: str) -> None:
        if key == "home":
            self.current = "home"
        elif key == "recents":
            self.current = "recents"
        elif key == "back":
            self.current = "home"

    def _touch(self, event: TouchEvent) -> None:
        lay = self.layout
        x = min(lay.width - 1, max(0, round(event.x * lay.width)))
        y = min(lay.height - 1, max(0, round(event.y * lay.height)))
        if event.action == "down":
            self._pressed[event.pointer_id] = (x, y)
        started = self._pressed.get(event.pointer_id, (x, y))
        if event.action in ("up", "cancel"):
            self._pressed.pop(event.pointer_id, None)
        nav = lay.nav_button_at(*started)
        if nav is not None:
            if event.action == "up" and lay.nav_button_at(x, y) == nav:
                self.navigate(nav)
            return
        if self.current == "Touch":
            if event.action == "down" and self.touch_app.is_clear_button(x, y):
                self.touch_app.clear()
            else:
                self.touch_app.touch(event, x, y)
        elif event.action == "up":
            if not self._app_tap(x, y):
                self._tap(started, (x, y))

    def _app_tap(self, x: int, y: int) -> bool:
        """Buttons inside the Notes, Dialer and Messages apps."""
        lay = self.layout
        x0, y0, x1, y1 = lay.action_button()
        on_button = x0 <= x <= x1 and y0 <= y <= y1
        if self.current == "Notes" and lay.corner_button(x, y):
            self.outbox.append(("clipboard", self.notes.text, ""))
        elif self.current == "Dialer" and on_button:
            self.outbox.append(("dial", self.dialer.number, ""))
            self.dialer.status = f"Calling {self.dialer.number} via your phone..."
        elif self.current == "Messages" and on_button:
            self.outbox.append(("sms", self.messages.to, self.messages.body))
            self.messages.status = f"Sending to {self.messages.to} via your phone..."
        elif self.current == "Messages" and y < lay.content_top + lay.u(200):
            self.messages.field = "to"
        elif self.current == "Messages" and y < lay.content_top + lay.u(400):
            self.messages.field = "body"
        else:
            return False
        return True

    def _tap(self, start: tuple[int, int], end: tuple[int, int]) -> None:
        if abs(start[0] - end[0]) > self.layout.u(40) or abs(start[1] - end[1]) > self.layout.u(40):
            return  # a swipe, not a tap
        x, y = end
        if self.current == "home":
            for name, x0, y0, x1, y1 in self.layout.icon_rects():
                if x0 <= x <= x1 and y0 <= y <= y1 + self.layout.u(40):
                    self.open(name)
                    return
        elif self.current == "recents":
            for i, name in enumerate(self.recents):
                top, bottom = self._recent_card_y(i)
                if top <= y <= bottom:
                    self.open(name)
                    return
            self.current = "home"

    # -- drawing ---------------------------------------------------------------------------

    def _draw_home_background(self) -> np.ndarray:
        lay = self.layout
        frame = np.empty((lay.height, lay.width, 3), np.uint8)
        frame[:] = BACKGROUND
        title = text_sprite("cloudphone", lay.u(52), WHITE)
        blit(frame, title, (lay.width - title.shape[1]) // 2, lay.content_top + lay.u(60))
        colours = dict(APPS)
        for name, x0, y0, x1, y1 in lay.icon_rects():
            blit(frame, rounded_sprite(x1 - x0, y1 - y0, lay.u(28), colours[name]), x0, y0)
            letter = text_sprite(name[0], lay.u(56), WHITE)
            blit(
                frame,
                letter,
                x0 + (x1 - x0 - letter.shape[1]) // 2,
                y0 + (y1 - y0 - letter.shape[0]) // 2,
            )
            label = text_sprite(name, lay.u(24), WHITE)
            blit(frame, label, x0 + (x1 - x0 - label.shape[1]) // 2, y1 + lay.u(10))
        return frame

    def _recent_card_y(self, index: int) -> tuple[int, int]:
        top = self.layout.content_top + self.layout.u(100) + index * self.layout.u(150)
        return top, top + self.layout.u(130)

    def _view(self) -> tuple[object, ...]:
        """What decides the content area, apart from the Touch app's own damage."""
        notes = self.notes.text if self.current == "Notes" else None
        recents = tuple(self.recents) if self.current == "recents" else None
        app: object = None
        if self.current == "Dialer":
            app = (self.dialer.number, self.dialer.status)
        elif self.current == "Messages":
            m = self.messages
            app = (m.to, m.body, m.field, m.status)
        return (self.current, notes, recents, app)

    def _take_damage(self, stamp: bool) -> tuple[tuple[int, int], ...] | None:
        view = self._view()
        touch_damage = self.touch_app.damage if self.current == "Touch" else []
        self.touch_app.damage = []
        if view != self._last_view or touch_damage is None:
            self._last_view = view
            return None
        bands = list(touch_damage)
        clock = time.strftime("%H:%M")
        if clock != self._status_clock:
            bands.append((0, self.layout.status_h))
        if stamp:
            bands.append((0, strip_height(self.layout.height)))
        return tuple(bands)

    def render(self, input_seq: int, frame_counter: int, stamp: bool) -> np.ndarray:
        """Draw the screen; `last_damage` then says which rows changed since the last call."""
        lay = self.layout
        self.last_damage = self._take_damage(stamp)
        if self.current == "home":
            frame = self._home.copy()
        else:
            frame = np.empty((lay.height, lay.width, 3), np.uint8)
            if self.current == "Touch":
                self.touch_app.draw(frame)
            elif self.current == "Notes":
                self.notes.draw(frame)
            elif self.current == "Dialer":
                self.dialer.draw(frame)
            elif self.current == "Messages":
                self.messages.draw(frame)
            elif self.current == "recents":
                self._draw_recents(frame)
            else:
                app = self._plain_apps.get(self.current)
                if app is None:
                    app = PlainApp(lay, self.current, dict(APPS)[self.current])
                    self._plain_apps[self.current] = app
                app.draw(frame)
        self._draw_status_bar(frame)
        self._draw_nav_bar(frame)
        if stamp:
            draw_stamp(frame, input_seq, frame_counter)
        return frame

    def _draw_recents(self, frame: np.ndarray) -> None:
        lay = self.layout
        fill(frame, 0, lay.content_top, lay.width, lay.content_bottom, (40, 44, 56))
        blit(
            frame,
            text_sprite("Recent apps", lay.u(36), WHITE),
            lay.u(28),
            lay.content_top + lay.u(30),
        )
        colours = dict(APPS)
        for i, name in enumerate(self.recents):
            top, bottom = self._recent_card_y(i)
            if bottom > lay.content_bottom:
                break
            blit(
                frame,
                rounded_sprite(lay.width - lay.u(56), bottom - top, lay.u(20), colours[name]),
                lay.u(28),
                top,
            )
            blit(frame, text_sprite(name, lay.u(36), WHITE), lay.u(60), top + lay.u(40))
        if not self.recents:
            blit(
                frame,
                text_sprite("No recent apps", lay.u(30), GREY),
                lay.u(28),
                lay.content_top + lay.u(110),
            )

    def _draw_status_bar(self, frame: np.ndarray) -> None:
        clock = time.strftime("%H:%M")
        if clock != self._status_clock:
            self._status_bar = np.empty((self.layout.status_h, self.layout.width, 3), np.uint8)
            self._paint_status_bar(self._status_bar, clock)
            self._status_clock = clock
        frame[: self.layout.status_h] = self._status_bar

    def _paint_status_bar(self, frame: np.ndarray, clock: str) -> None:
        lay = self.layout
        fill(frame, 0, 0, lay.width, lay.status_h, BAR)
        sprite = text_sprite(clock, lay.u(26), WHITE)
        y = (lay.status_h - sprite.shape[0]) // 2
        blit(frame, sprite, lay.u(24), y)
        right = text_sprite("5G  100%", lay.u(22), WHITE)
        blit(
            frame,
            right,
            lay.width - right.shape[1] - lay.u(24),
            (lay.status_h - right.shape[0]) // 2,
        )

    def _draw_nav_bar(self, frame: np.ndarray) -> None:
        frame[self.layout.content_bottom :] = self._nav_bar

    def _paint_nav_bar(self) -> np.ndarray:
        lay = self.layout
        frame = np.empty((lay.height, lay.width, 3), np.uint8)
        top = lay.content_bottom
        fill(frame, 0, top, lay.width, lay.height, BAR)
        cy = top + lay.nav_h // 2
        third = lay.width // 3
        s = lay.u(18)
        # back: a triangle pointing left
        cx = third // 2
        for dy in range(-s, s + 1):
            fill(frame, cx - s // 2 + abs(dy), cy + dy, cx + s // 2 + s // 2, cy + dy + 1, GREY)
        # home: a ring
        cx = third + third // 2
        disc(frame, cx, cy, s, GREY)
        disc(frame, cx, cy, s - lay.u(4), BAR)
        # recents: a square outline
        cx = 2 * third + third // 2
        fill(frame, cx - s, cy - s, cx + s, cy + s, GREY)
        fill(frame, cx - s + lay.u(4), cy - s + lay.u(4), cx + s - lay.u(4), cy + s - lay.u(4), BAR)
        return frame[top:].copy()
