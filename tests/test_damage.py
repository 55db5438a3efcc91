"""Damage-driven conversion gives exactly the picture a full conversion gives."""

from __future__ import annotations

import random
import time

import numpy as np
from cloudphone.codecs.convert import ColourConverter
from cloudphone.vm.guest import NavEvent, RawFrame, TextEvent, TouchEvent, merge_damage
from cloudphone.vm.simulated.ui import PhoneUI


def test_patched_conversion_equals_full_conversion_through_a_session() -> None:
    rng = random.Random(7)
    ui = PhoneUI(720, 1280)
    patched, full = ColourConverter(720, 1280), ColourConverter(720, 1280)
    events: list = [TouchEvent("down", 0, 0.15, 0.24), TouchEvent("up", 0, 0.15, 0.24)]  # Touch app
    for _ in range(60):
        kind = rng.random()
        if kind < 0.8:
            pid = rng.randrange(3)
            events.append(
                TouchEvent(
                    rng.choice(["down", "move", "move", "up"]),
                    pid,
                    rng.random(),
                    rng.uniform(0.05, 0.9),
                )
            )
        elif kind < 0.9:
            events.append(NavEvent(rng.choice(["home", "recents", "back"])))
        else:
            events.append(TextEvent("abc"))
    rows_patched = 0
    for i, event in enumerate(events):
        ui.apply(event)
        image = ui.render(i, i, stamp=True)
        frame = RawFrame(image, "rgb24", time.monotonic(), i, i, ui.last_damage)
        a = patched.convert(frame).to_ndarray()
        b = full.convert(RawFrame(image, "rgb24", 0.0)).to_ndarray()
        np.testing.assert_array_equal(a, b, err_msg=f"after event {i}: {event}")
        rows_patched = patched.rows_converted
    assert rows_patched < full.rows_converted * 0.6, "damage should spare most rows"


def test_skipped_pictures_fold_their_damage_into_the_next() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    a = RawFrame(image, "rgb24", 0.0, damage=((0, 2),))
    b = RawFrame(image, "rgb24", 0.0, damage=((2, 4),))
    assert merge_damage(a, b).damage == ((0, 2), (2, 4))
    assert merge_damage(RawFrame(image, "rgb24", 0.0), b).damage is None
