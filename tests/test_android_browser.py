"""Android passthrough in headless Chromium: the phone's own H.264 plays in the real H5 player,
turns with the phone without a reconnect, a two-finger touch lands in device pixels, and its
sound plays once the user unmutes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cloudphone.vm.pool import GuestSpec

from benchmarks.browser import launch, unavailable_reason
from tests.conftest import EdgeFactory
from tests.fakes.adb_server import FakeAdbServer
from tests.fakes.scrcpy_device import add_phone

REASON = unavailable_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(REASON is not None, reason=f"BROWSER TESTS SKIPPED: {REASON}"),
]


async def test_android_in_chromium(make_edge: EdgeFactory, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    adb = await FakeAdbServer().start()
    edge = await make_edge(phones=0)
    phone, options = add_phone(adb, tmp_path, "browser-phone")
    options["audio"] = True
    await edge.pool.create("droid-b", GuestSpec("android", options=options))
    pipeline = edge.node.pipeline("droid-b")
    try:
        async with async_playwright() as pw:
            browser = await launch(pw)
            page = await browser.new_page(viewport={"width": 800, "height": 800}, has_touch=True)
            await page.goto(edge.url("/phone/droid-b?codec=h264"))
            await page.wait_for_function(
                "() => { const v = document.getElementById('video');"
                " return window.cloudphone.connected && v.videoWidth === 320"
                " && v.getVideoPlaybackQuality().totalVideoFrames > 10; }",
                timeout=20000,
            )
            session = await page.evaluate("window.cloudphone.session")

            # Sound: the page starts muted (autoplay rules) and offers a toggle for the audio.
            toggle = page.locator("#sound-toggle")
            await toggle.wait_for(state="visible", timeout=10000)
            assert await page.evaluate("document.getElementById('video').muted")
            await toggle.click()
            assert not await page.evaluate("document.getElementById('video').muted")
            assert await toggle.get_attribute("aria-pressed") == "true"
            audio_packets = 0
            for _ in range(50):
                audio_packets = await page.evaluate(
                    "async () => { let n = 0; (await window.cloudphone.pc.getStats()).forEach("
                    "s => { if (s.type === 'inbound-rtp' && s.kind === 'audio')"
                    " n = s.packetsReceived; }); return n; }"
                )
                if audio_packets > 10:
                    break
                await asyncio.sleep(0.2)
            assert audio_packets > 10

            phone.rotate()
            await page.wait_for_function(
                "() => document.getElementById('video').videoWidth === 640", timeout=10000
            )
            assert await page.evaluate("window.cloudphone.session") == session  # no reconnect
            assert await page.evaluate("window.cloudphone.reconnects") == 0

            # Two fingers on the displayed (now landscape) picture, through CDP touch events.
            box = await page.locator("#video").bounding_box()
            assert box is not None
            scale = min(box["width"] / 640, box["height"] / 320)
            x0 = box["x"] + (box["width"] - 640 * scale) / 2
            y0 = box["y"] + (box["height"] - 320 * scale) / 2

            def at(fx: float, fy: float) -> dict[str, float]:
                return {"x": x0 + fx * 640 * scale, "y": y0 + fy * 320 * scale}

            cdp = await page.context.new_cdp_session(page)
            fingers = [{**at(0.25, 0.5), "id": 1}, {**at(0.75, 0.25), "id": 2}]
            await cdp.send(
                "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": fingers}
            )
            await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
            await phone.wait_for(lambda: len(phone.received.touches) >= 4, within=10)
            downs = [t for t in phone.received.touches if t.action == 0]
            assert len({t.pointer_id for t in downs}) == 2
            assert all((t.width, t.height) == (640, 320) for t in phone.received.touches)
            points = sorted((t.x, t.y) for t in downs)
            assert abs(points[0][0] - 160) <= 3 and abs(points[0][1] - 160) <= 3
            assert abs(points[1][0] - 480) <= 3 and abs(points[1][1] - 80) <= 3
            assert pipeline.encoders_created == 0
            await browser.close()
    finally:
        await edge.pool.close()
        await adb.close()
