"""The guest interface: what every phone behind the edge looks like to the pipeline.

A guest is anything with a screen and an input path: the embedded simulated phone, a QEMU
virtual machine, an Android device over ADB. The pipeline only ever sees this interface, so a
new kind of guest never touches encoding, WebRTC or signaling.

Data flows one way: the guest *pushes* pictures (or already-encoded access units) into a
`FrameSink` it was attached to; the edge *sends* validated input into the guest. Everything else
a guest wants to say (screen size changed, clipboard, dial request, restarting) goes out as a
`pyee` event on `Guest.events`, named in `GuestEventName`.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from pyee.asyncio import AsyncIOEventEmitter

TouchAction = Literal["down", "move", "up", "cancel"]
KeyAction = Literal["down", "up", "press"]
NavKey = Literal["back", "home", "recents"]

TOUCH_ACTIONS: tuple[TouchAction, ...] = ("down", "move", "up", "cancel")
KEY_ACTIONS: tuple[KeyAction, ...] = ("down", "up", "press")
NAV_KEYS: tuple[NavKey, ...] = ("back", "home", "recents")


class GuestState(enum.StrEnum):
    """Lifecycle of a guest, as viewers are told about it."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"


class GuestEventName(enum.StrEnum):
    """Names of the events a guest emits on `Guest.events`."""

    SCREEN = "screen"  # ScreenGeometry: size or rotation changed
    STATE = "state"  # GuestState
    CLIPBOARD = "clipboard"  # str: the guest's clipboard changed
    TELEPHONY = "telephony"  # TelephonyRequest: the guest wants to dial or text


@dataclass(frozen=True, slots=True)
class ScreenGeometry:
    """Size of the picture the guest produces, and how its UI is rotated (degrees)."""

    width: int
    height: int
    rotation: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"width": self.width, "height": self.height, "rotation": self.rotation}


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a guest can do, so the edge and the page adapt instead of guessing."""

    multitouch: bool = True
    max_pointers: int = 10
    text_input: bool = True
    clipboard: bool = False
    rotation: bool = False
    telephony: bool = False
    # Codec name ("h264") when the guest hands over encoded access units instead of pictures.
    encoded_output: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "multitouch": self.multitouch,
            "maxPointers": self.max_pointers,
            "textInput": self.text_input,
            "clipboard": self.clipboard,
            "rotation": self.rotation,
            "telephony": self.telephony,
            "encodedOutput": self.encoded_output,
        }


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One captured picture.

    `data` is a numpy array in the FFmpeg pixel format `pixel_format`: packed formats (`rgb24`,
    `bgra`, `bgr0`, `rgba`) are H x W x C; `yuv420p` is the three planes stacked as (H*3/2) x W.
    The array is owned by the frame: a guest must not write into it after pushing.
    """

    data: np.ndarray
    pixel_format: str
    captured_at: float  # time.monotonic() when the picture was made
    input_seq: int = 0  # sequence number of the last input applied before this picture
    frame_id: int = 0  # the guest's own picture counter, for tracing a picture through the edge
    # Row bands [y0, y1) that differ from the guest's previous picture; None: unknown (all).
    damage: tuple[tuple[int, int], ...] | None = None

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def height(self) -> int:
        rows = int(self.data.shape[0])
        return rows * 2 // 3 if self.pixel_format == "yuv420p" else rows


def merge_damage(older: RawFrame, newer: RawFrame) -> RawFrame:
    """`newer` with the damage of a skipped `older` picture folded in, so that a consumer that
    never saw `older` still updates every row that changed since the picture before it."""
    if newer.damage is None:
        return newer
    if older.damage is None or older.data.shape != newer.data.shape:
        return dataclasses.replace(newer, damage=None)
    return dataclasses.replace(newer, damage=older.damage + newer.damage)


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    """One encoded access unit from a guest that encodes by itself (Annex-B H.264 for scrcpy)."""

    data: bytes
    codec: str
    keyframe: bool
    captured_at: float
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class TouchEvent:
    """One pointer's change. x, y are normalised 0..1 in the guest's current screen."""

    action: TouchAction
    pointer_id: int
    x: float
    y: float
    pressure: float = 1.0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """A hardware-style key, named like DOM `KeyboardEvent.code` ("KeyA", "Enter")."""

    action: KeyAction
    code: str
    shift: bool = False
    seq: int = 0


@dataclass(frozen=True, slots=True)
class TextEvent:
    """Committed text from the page's text box or IME."""

    text: str
    seq: int = 0


@dataclass(frozen=True, slots=True)
class NavEvent:
    """A navigation button: back, home or recents."""

    key: NavKey
    seq: int = 0


InputEvent = TouchEvent | KeyEvent | TextEvent | NavEvent


@dataclass(frozen=True, slots=True)
class TelephonyRequest:
    """The guest asks the user's real handset to dial or send an SMS."""

    request_id: str
    kind: Literal["dial", "sms"]
    number: str
    body: str = ""


class FrameSink(Protocol):
    """Where a guest pushes what it shows. Both calls are thread-safe and never block."""

    def push_frame(self, frame: RawFrame) -> None: ...

    def push_encoded(self, chunk: EncodedChunk) -> None: ...


class GuestError(RuntimeError):
    """A guest could not start or stopped working; the message is shown to operators."""


class Guest(abc.ABC):
    """Base class of every phone the edge can stream.

    Subclasses implement `capabilities`, `start`, `stop` and `send_input`, and call
    `_set_state`, `_set_screen`, `_push_frame` / `_push_encoded` so that events and frames reach
    the pipeline consistently.
    """

    def __init__(self, guest_id: str, screen: ScreenGeometry | None = None) -> None:
        self.guest_id = guest_id
        self.events = AsyncIOEventEmitter()
        self._sink: FrameSink | None = None
        self._state = GuestState.STOPPED
        self._screen = screen or ScreenGeometry(720, 1280)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.guest_id} {self._state}>"

    @property
    def state(self) -> GuestState:
        return self._state

    @property
    def screen(self) -> ScreenGeometry:
        return self._screen

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    @property
    def kind(self) -> str:
        """Short name of the guest type, for logs and stats ("simulated", "qemu", "android")."""
        return type(self).__name__.lower()

    def attach(self, sink: FrameSink | None) -> None:
        """Route frames to `sink` (the pipeline); None detaches."""
        self._sink = sink

    @abc.abstractmethod
    async def start(self) -> None:
        """Boot or connect; return once the first picture can be expected."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop and release everything the guest holds (processes, sockets, threads)."""

    @abc.abstractmethod
    async def send_input(self, event: InputEvent) -> None:
        """Apply one validated input event (dropped, with a log line, unless running)."""

    def request_keyframe(self) -> None:
        """Ask a self-encoding guest for a keyframe now. Raw-frame guests need not act."""

    def request_refresh(self) -> None:
        """Ask for a fresh picture even if nothing changed (a viewer joined)."""

    async def answer_telephony(self, request_id: str, result: str) -> None:
        """The edge's answer to a `TelephonyRequest` this guest emitted: `confirmed`,
        `refused`, `timed-out`, `forbidden`, `invalid` or `unavailable`. Guests that never
        emit telephony requests need not act."""

    def _set_state(self, state: GuestState) -> None:
        if state != self._state:
            self._state = state
            self.events.emit(GuestEventName.STATE, state)

    def _set_screen(self, screen: ScreenGeometry) -> None:
        if screen != self._screen:
            self._screen = screen
            self.events.emit(GuestEventName.SCREEN, screen)

    def _push_frame(self, frame: RawFrame) -> None:
        sink = self._sink
        if sink is not None:
            sink.push_frame(frame)

    def _push_encoded(self, chunk: EncodedChunk) -> None:
        sink = self._sink
        if sink is not None:
            sink.push_encoded(chunk)
