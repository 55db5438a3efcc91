"""Real headless Chromium (Debian's, driven by Playwright) against a real edge, both codecs.

Input is made with Playwright's real input devices (touchscreen, CDP touch events, mouse,
keyboard, clicks): the page's own event handlers turn it into protocol messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from cloudphone.vm.simulated import SimulatedPhone
from cloudphone.vm.simulated.ui import Layout, PhoneUI

from benchmarks.browser import launch, unavailable_reason
from tests.conftest import Edge, eventually

REASON = unavailable_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(REASON is not None, reason=f"BROWSER TESTS SKIPPED: {REASON}"),
]
CODECS = ["h264", "vp8"]


@dataclass
class Player:
    page: Any
    context: Any
    phone: SimulatedPhone
    box: dict[str, float]

    @property
    def ui(self) -> PhoneUI:
        assert self.phone.ui is not None
        return self.phone.ui

    def at(self, x: float, y: float) -> tuple[float, float]:
        """Page coordinates of a point given as 0..1 of the phone's screen (letterboxing aside)."""
        box = self.box
        scale = min(box["width"] / 720, box["height"] / 1280)
        w, h = 720 * scale, 1280 * scale
        return box["x"] + (box["width"] - w) / 2 + x * w, box["y"] + (box["height"] - h) / 2 + y * h

    def icon(self, name: str) -> tuple[float, float]:
        _, x0, y0, x1, y1 = next(r for r in Layout(720, 1280).icon_rects() if r[0] == name)
        return self.at((x0 + x1) / 2 / 720, (y0 + y1) / 2 / 1280)

    async def seq(self) -> int:
        return int(await self.page.evaluate("window.cloudphone.seq"))

    async def wait_stamp(self, seq: int, timeout: float = 10.0) -> None:
        """Until a displayed frame carries input `seq` (read from the video by the page)."""
        await self.page.wait_for_function(
            f"window.cloudphoneProbe.frames.some(f => f.seq >= {seq})", timeout=timeout * 1000
        )


@pytest.fixture
async def player(edge: Edge, request: pytest.FixtureRequest) -> AsyncIterator[Player]:
    from playwright.async_api import async_playwright

    codec = request.param
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            context = await browser.new_context(
                viewport={"width": 420, "height": 860}, has_touch=True
            )
            page = await context.new_page()
            await page.goto(edge.url(f"/phone/phone-1?probe=1&codec={codec}"))
            await page.wait_for_function(
                "window.cloudphone.connected && document.getElementById('video').videoWidth > 0",
                timeout=20000,
            )
            await page.wait_for_function("window.cloudphoneProbe.framesSeen > 0", timeout=10000)
            box = await page.locator("#video").bounding_box()
            phone = edge.pool.get("phone-1")
            assert isinstance(phone, SimulatedPhone)
            yield Player(page, context, phone, box)
        finally:
            await browser.close()


@pytest.mark.parametrize("player", CODECS, indirect=True)
async def test_player_plays_phone_sized_video_with_live_stats(player: Player) -> None:
    page = player.page
    size = await page.evaluate(
        "[document.getElementById('video').videoWidth, document.getElementById('video').videoHeight]"
    )
    assert size == [720, 1280]
    assert await page.evaluate("document.getElementById('video').paused") is False
    # the edge's own numbers come only while the overlay shows them (control/stats)
    assert await page.evaluate("Object.keys(window.cloudphone.serverStats).length") == 0
    await page.click("#stats-toggle")
    await page.touchscreen.tap(*player.icon("Touch"))  # something to show
    await page.wait_for_function(
        "window.cloudphone.stats.fps > 0 && window.cloudphone.stats.framesDecoded > 1"
        " && window.cloudphone.serverStats.type === 'stats'",
        timeout=10000,
    )
    await page.wait_for_function(
        "document.getElementById('overlay').textContent.includes('ms (server)')"
        " && !document.getElementById('overlay').textContent.includes('\u2013 (server)')",
        timeout=5000,
    )
    overlay = await page.locator("#overlay").inner_text()
    assert "fps" in overlay and "720\u00d71280" in overlay
    assert await page.locator("#overlay").is_visible()


@pytest.mark.parametrize("player", CODECS, indirect=True)
async def test_tap_two_finger_gesture_and_mouse_reach_the_phone(player: Player) -> None:
    page = player.page
    await page.touchscreen.tap(*player.icon("Touch"))
    seq = await player.seq()
    await eventually(lambda: player.ui.current == "Touch")
    await player.wait_stamp(seq)

    cdp = await player.context.new_cdp_session(page)
    starts = [player.at(0.3, 0.4), player.at(0.7, 0.6)]

    def points(step: int) -> list[dict[str, float]]:
        return [
            {
                "x": x + step * 6 * (1 if i == 0 else -1),
                "y": y + step * 8,
                "id": i,
                "radiusX": 4,
                "radiusY": 4,
                "force": 1,
            }
            for i, (x, y) in enumerate(starts)
        ]

    await cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": points(0)})
    for step in range(1, 10):
        await cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": points(step)}
        )
        await asyncio.sleep(0.02)
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    seq = await player.seq()
    await player.wait_stamp(seq)
    await eventually(lambda: player.ui.touch_app.strokes >= 2)
    assert not player.ui.touch_app.fingers, "both fingers lifted"

    # The trails are on screen: red (pointer 0) and blue (pointer 1) pixels in the decoded video.
    colours = await page.evaluate(
        """() => {
            const v = document.getElementById('video');
            const c = document.createElement('canvas'); c.width = 180; c.height = 320;
            const ctx = c.getContext('2d'); ctx.drawImage(v, 0, 0, 180, 320);
            const d = ctx.getImageData(0, 0, 180, 320).data;
            let red = 0, blue = 0;
            for (let i = 0; i < d.length; i += 4) {
                if (d[i] > 200 && d[i+1] < 130 && d[i+2] < 130) red++;
                if (d[i] < 140 && d[i+1] > 150 && d[i+2] > 200) blue++;
            }
            return {red, blue};
        }"""
    )
    assert colours["red"] > 20 and colours["blue"] > 20, colours

    strokes = player.ui.touch_app.strokes
    await page.mouse.move(*player.at(0.2, 0.75))
    await page.mouse.down()
    for i in range(8):
        await page.mouse.move(*player.at(0.2 + i * 0.05, 0.75))
    await page.mouse.up()
    await eventually(lambda: player.ui.touch_app.strokes == strokes + 1)


@pytest.mark.parametrize("player", CODECS, indirect=True)
async def test_typing_and_navigation_buttons(player: Player) -> None:
    page = player.page
    await page.touchscreen.tap(*player.icon("Notes"))
    await eventually(lambda: player.ui.current == "Notes")
    await page.fill("#text", "hello from chromium")
    await page.press("#text", "Enter")
    await eventually(lambda: player.ui.notes.text == "hello from chromium")
    seq = await player.seq()
    await player.wait_stamp(seq)
    await page.click("#backspace")
    await eventually(lambda: player.ui.notes.text == "hello from chromiu")
    await page.click("#navbar [data-nav=home]")
    await eventually(lambda: player.ui.current == "home")
    await page.click("#navbar [data-nav=recents]")
    await eventually(lambda: player.ui.current == "recents")
    await page.click("#navbar [data-nav=back]")
    await eventually(lambda: player.ui.current == "home")
    seq = await player.seq()
    await player.wait_stamp(seq)


@pytest.mark.parametrize("player", CODECS, indirect=True)
async def test_reload_gets_the_phone_back_within_two_seconds(player: Player) -> None:
    page = player.page
    started = time.monotonic()
    await page.reload()
    await page.wait_for_function(
        "window.cloudphone.connected && window.cloudphoneProbe && window.cloudphoneProbe.framesSeen > 0",
        timeout=5000,
    )
    assert time.monotonic() - started < 2.0
