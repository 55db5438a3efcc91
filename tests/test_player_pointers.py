"""The H5 player sends as many fingers as the phone's capabilities say, in headless Chromium:
a multi-touch phone gets both fingers of a two-finger touch, a single-touch phone (what a
QEMU 7.2 guest reports) only the first. Simulated phones stand in for the guests, so no QEMU
boot is needed; the QEMU side of the flag is tested in test_qemu_edge/test_qemu_multitouch."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from cloudphone.vm.guest import Capabilities, InputEvent, TouchEvent
from cloudphone.vm.pool import GuestSpec
from cloudphone.vm.simulated.phone import SimulatedPhone

from benchmarks.browser import launch, unavailable_reason
from tests.conftest import EdgeFactory, eventually

REASON = unavailable_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(REASON is not None, reason=f"BROWSER TESTS SKIPPED: {REASON}"),
]


class RecordingPhone(SimulatedPhone):
    """A simulated phone that keeps the touches it gets and says what its capabilities say."""

    def __init__(self, guest_id: str, capabilities: Capabilities) -> None:
        super().__init__(guest_id, width=320, height=640, fps=15)
        self._capabilities = capabilities
        self.touches: list[TouchEvent] = []

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def send_input(self, event: InputEvent) -> None:
        if isinstance(event, TouchEvent):
            self.touches.append(event)
        await super().send_input(event)


async def _two_fingers(browser: Any, url: str) -> None:
    page = await browser.new_page(viewport={"width": 400, "height": 800}, has_touch=True)
    await page.goto(url)
    await page.wait_for_function(
        "() => window.cloudphone.connected && document.getElementById('video').videoWidth > 0",
        timeout=20000,
    )
    box = await page.locator("#video").bounding_box()
    assert box is not None
    scale = min(box["width"] / 320, box["height"] / 640)
    x0 = box["x"] + (box["width"] - 320 * scale) / 2
    y0 = box["y"] + (box["height"] - 640 * scale) / 2
    fingers = [
        {"x": x0 + 0.25 * 320 * scale, "y": y0 + 0.5 * 640 * scale, "id": 1},
        {"x": x0 + 0.75 * 320 * scale, "y": y0 + 0.25 * 640 * scale, "id": 2},
    ]
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": fingers})
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


async def test_player_sends_only_the_fingers_the_phone_takes(make_edge: EdgeFactory) -> None:
    from playwright.async_api import async_playwright

    edge = await make_edge(phones=0)
    single = Capabilities(multitouch=False, max_pointers=1, text_input=True, rotation=True)
    multi = replace(single, multitouch=True, max_pointers=10)
    phones: dict[str, RecordingPhone] = {}

    def factory(guest_id: str, spec: GuestSpec) -> RecordingPhone:
        phones[guest_id] = RecordingPhone(guest_id, spec.options["capabilities"])
        return phones[guest_id]

    edge.pool.register_kind("recording", factory)
    await edge.pool.create("one", GuestSpec("recording", options={"capabilities": single}))
    await edge.pool.create("ten", GuestSpec("recording", options={"capabilities": multi}))
    try:
        async with async_playwright() as pw:
            browser = await launch(pw)
            await _two_fingers(browser, edge.url("/phone/ten?codec=h264"))
            await _two_fingers(browser, edge.url("/phone/one?codec=h264"))
            await eventually(lambda: len(phones["ten"].touches) >= 4, 10.0)
            await eventually(lambda: len(phones["one"].touches) >= 2, 10.0)
            await browser.close()
    finally:
        await edge.pool.close()
    ten = phones["ten"].touches
    assert sorted(t.action for t in ten) == ["down", "down", "up", "up"]
    assert {t.pointer_id for t in ten} == {0, 1}
    one = phones["one"].touches
    assert [t.action for t in one] == ["down", "up"]  # the second finger never left the page
    assert {t.pointer_id for t in one} == {0}
    assert abs(one[0].x - 0.25) < 0.02 and abs(one[0].y - 0.5) < 0.02  # the first finger
