"""Touch ids to QEMU multi-touch slots: `TouchEvent`s become QMP `mtt` event batches.

Why a mirror of the guest kernel's state: QEMU >= 8.1's `virtio-multitouch-pci` turns each
`mtt` event into evdev MT protocol B (`begin`/`update`/`end`/`cancel` -> ABS_MT_SLOT +
ABS_MT_TRACKING_ID; `data` -> ABS_MT_POSITION_X/Y of the slot selected last), and the guest's
input core drops every value equal to the one it holds and every report left empty. The
guest counts the reports it applies (the latency stamp), so the host must know which reports
will reach it: this class keeps what the kernel holds per slot and returns a batch only when
something changes, exactly like the tablet path does for single touch.

Mapping: each edge pointer id gets the lowest free slot on `down` and keeps it until `up` or
`cancel` (tracking id -1 ends the contact, as the MT protocol says). BTN_TOUCH goes down with
the first finger and up with the last, as Linux's own MT drivers report it. A finger beyond
`MAX_SLOTS`, or a move/up for a finger that never went down, is logged and dropped; nothing
else changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cloudphone.vm.guest import TouchEvent

log = logging.getLogger(__name__)

#: QEMU's INPUT_EVENT_SLOTS_MAX: the slots its console and input layer use.
MAX_SLOTS = 10
ABS_MAX = 0x7FFF  # QEMU's absolute axis range, for multi-touch positions too
_TRACKING_IDS = 0x10000  # ids wrap here; -1 is "no contact"

QmpEvent = dict[str, Any]


def mtt(kind: str, slot: int, tracking_id: int, axis: str = "x", value: int = 0) -> QmpEvent:
    """One QMP `InputMultiTouchEvent` (all five members are mandatory in QEMU's schema)."""
    return {
        "type": "mtt",
        "data": {
            "type": kind,
            "slot": slot,
            "tracking-id": tracking_id,
            "axis": axis,
            "value": value,
        },
    }


def touch_button(down: bool) -> QmpEvent:
    return {"type": "btn", "data": {"down": down, "button": "touch"}}


@dataclass(slots=True)
class _Slot:
    """What the guest kernel holds for one slot (its initial tracking id is -1)."""

    tracking_id: int = -1
    x: int = 0
    y: int = 0


class SlotMapper:
    """Translates one pointer's change at a time into one QMP batch (one guest report)."""

    def __init__(self, guest_id: str = "qemu", max_slots: int = MAX_SLOTS) -> None:
        self.guest_id = guest_id
        self.max_slots = max_slots
        self.reset()

    def reset(self) -> None:
        """Forget every contact: a freshly booted guest holds none."""
        self._slots = [_Slot() for _ in range(self.max_slots)]
        self._by_pointer: dict[int, int] = {}
        self._next_tracking_id = 0
        self._button = False

    @property
    def active(self) -> dict[int, int]:
        """Pointer id -> slot for the fingers that are down."""
        return dict(self._by_pointer)

    def translate(self, event: TouchEvent) -> list[QmpEvent]:
        """The QMP events for `event`, or [] when the guest would see no change."""
        x = round(min(1.0, max(0.0, event.x)) * ABS_MAX)
        y = round(min(1.0, max(0.0, event.y)) * ABS_MAX)
        slot = self._by_pointer.get(event.pointer_id)
        events: list[QmpEvent] = []
        if event.action == "down" and slot is None:
            slot = self._free_slot()
            if slot is None:
                log.warning(
                    "%s: finger %d is one more than the %d the guest tracks; dropped",
                    self.guest_id,
                    event.pointer_id,
                    self.max_slots,
                )
                return []
            self._by_pointer[event.pointer_id] = slot
            tracking_id = self._next_tracking_id
            self._next_tracking_id = (tracking_id + 1) % _TRACKING_IDS
            self._slots[slot].tracking_id = tracking_id
            events.append(mtt("begin", slot, tracking_id))
            changed = True
        elif slot is None:
            log.debug(
                "%s: %s for finger %d that is not down",
                self.guest_id,
                event.action,
                event.pointer_id,
            )
            return []
        else:  # move, up, cancel (or a repeated down) of a finger we track
            events.append(mtt("update", slot, self._slots[slot].tracking_id))
            changed = False
        state = self._slots[slot]
        if state.x != x:
            events.append(mtt("data", slot, state.tracking_id, "x", x))
            state.x, changed = x, True
        if state.y != y:
            events.append(mtt("data", slot, state.tracking_id, "y", y))
            state.y, changed = y, True
        if event.action in ("up", "cancel"):
            events.append(mtt("end" if event.action == "up" else "cancel", slot, -1))
            state.tracking_id, changed = -1, True
            del self._by_pointer[event.pointer_id]
        touching = bool(self._by_pointer)
        if touching != self._button:
            events.append(touch_button(touching))
            self._button = touching
        return events if changed else []

    def _free_slot(self) -> int | None:
        used = set(self._by_pointer.values())
        return next((s for s in range(self.max_slots) if s not in used), None)
