"""Sharing in real headless Chromium: an owner and an invited guest in two browser contexts.

Everything goes through the player page's own controls (invite form, request / grant buttons,
the telephony prompt) and real input devices; the phone and the edge are the real ones.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import numpy as np
import pytest
from cloudphone.edge.watermark import mark_mask, mark_text
from cloudphone.vm.simulated import SimulatedPhone

from benchmarks.browser import launch, unavailable_reason
from tests.conftest import EdgeFactory, eventually
from tests.test_sharing import LAYOUT, icon

REASON = unavailable_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(REASON is not None, reason=f"BROWSER TESTS SKIPPED: {REASON}"),
]

READY = (
    "window.cloudphone.connected && window.cloudphoneProbe && window.cloudphoneProbe.framesSeen > 0"
)
LUMA = """() => {
    const v = document.getElementById('video');
    const c = document.createElement('canvas'); c.width = 720; c.height = 1280;
    const ctx = c.getContext('2d'); ctx.drawImage(v, 0, 0, 720, 1280);
    const d = ctx.getImageData(0, 0, 720, 1280).data;
    const y = new Uint8Array(720 * 1280);
    for (let i = 0; i < y.length; i++) y[i] = (d[4*i] * 77 + d[4*i+1] * 150 + d[4*i+2] * 29) >> 8;
    let s = ''; for (let i = 0; i < y.length; i += 8192) s += String.fromCharCode(...y.subarray(i, i + 8192));
    return btoa(s);
}"""


async def tap(page: Any, x: float, y: float) -> None:
    """Tap at (x, y) given as 0..1 of the phone's screen, through the letterboxed video."""
    box = await page.locator("#video").bounding_box()
    scale = min(box["width"] / 720, box["height"] / 1280)
    w, h = 720 * scale, 1280 * scale
    await page.touchscreen.tap(box["x"] + (box["width"] - w) / 2 + x * w,
                               box["y"] + (box["height"] - h) / 2 + y * h)  # fmt: skip


async def luma(page: Any) -> np.ndarray:
    data = base64.b64decode(await page.evaluate(LUMA))
    return np.frombuffer(data, np.uint8).reshape(1280, 720).astype(np.int16)


def mark_change(diff: np.ndarray, label: str, others: tuple[str, ...]) -> float:
    """Mean luma change where `label`'s mark is drawn and no other mark is."""
    best = -255.0
    now = time.time()
    for at in (now, now - 60):
        mask = mark_mask(mark_text(label, at), 720, 1280) > 0.15
        for other in others:
            mask &= mark_mask(mark_text(other, at), 720, 1280) == 0
        best = max(best, float(np.abs(diff[mask]).mean()))
    return best


async def test_owner_and_invited_guest_share_a_phone(make_edge: EdgeFactory) -> None:
    from playwright.async_api import async_playwright

    edge = await make_edge(policy={"watermark": "viewer", "clipboard": "phone-to-browser"})
    phone = edge.pool.get("phone-1")
    assert isinstance(phone, SimulatedPhone)
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            size = {"viewport": {"width": 420, "height": 900}, "has_touch": True}
            owner = await (await browser.new_context(**size)).new_page()
            await owner.goto(edge.url("/phone/phone-1?probe=1&codec=h264"))
            await owner.wait_for_function(READY, timeout=20000)
            await owner.wait_for_selector("#control-state:text('You have control')")

            # The owner creates a control invite in the page and the guest opens the link.
            await owner.click("#sharing summary")
            await owner.select_option("#invite-kind", "control")
            await owner.fill("#invite-label", "guest-bob")
            await owner.click("#invite-create")
            await owner.wait_for_function("window.cloudphone.sharing.lastInvite !== null")
            url = await owner.input_value("#invite-link")
            assert "token=cpi_" in url
            guest = await (await browser.new_context(**size)).new_page()
            await guest.goto(url + "&probe=1&codec=h264")
            await guest.wait_for_function(READY, timeout=20000)
            await owner.wait_for_selector("#viewers li:has-text('guest-bob')")

            # Same frames: the owner's tap shows up, stamped, on both screens.
            await tap(owner, *icon("Touch"))
            seq = await owner.evaluate("window.cloudphone.seq")
            for page in (owner, guest):
                await page.wait_for_function(
                    f"window.cloudphoneProbe.frames.some(f => f.seq >= {seq})", timeout=10000
                )
            frames = [
                set(await p.evaluate("window.cloudphoneProbe.frames.map(f => f.frame)"))
                for p in (owner, guest)
            ]
            assert frames[0] & frames[1], "owner and guest decoded the same phone frames"

            # The guest's touch does nothing until control is granted, then it works.
            await tap(owner, 0.5, 0.96)  # home button in the phone's navigation bar
            await eventually(lambda: phone.ui is not None and phone.ui.current == "home")
            await tap(guest, *icon("Notes"))
            await guest.wait_for_function("window.cloudphone.lastError?.code === 'forbidden'")
            assert phone.ui is not None and phone.ui.current == "home"
            await guest.click("#request-control")
            await owner.click("[data-grant='guest-bob']")
            await guest.wait_for_selector("#control-state:text('You have control')")
            await owner.wait_for_selector("#control-state:text('guest-bob has control')")
            await tap(guest, *icon("Notes"))
            await eventually(lambda: phone.ui is not None and phone.ui.current == "Notes")

            # The guest's decoded picture carries the guest's name, the owner's the owner's.
            # Both pages must show the same phone frame: a fresh one, once the screen is still.
            await asyncio.sleep(0.5)
            phone.request_refresh()
            await eventually(lambda: phone.frames_rendered > 0)
            target = phone.frames_rendered
            await eventually(lambda: phone.frames_rendered > target)
            for page in (owner, guest):
                await page.wait_for_function(
                    f"window.cloudphoneProbe.frames.some(f => f.frame >= {target})", timeout=10000
                )
            seen = {"guest": await luma(guest), "owner": await luma(owner)}
            diff = seen["guest"] - seen["owner"]
            assert mark_change(diff, "guest-bob", ("developer",)) > 12
            assert mark_change(diff, "developer", ("guest-bob",)) > 12
            assert mark_change(diff, "mallory", ("developer", "guest-bob")) < 6  # control

            # Clipboard: phone -> browser allowed, browser -> phone refused at the edge.
            phone.copy("copied on the phone")
            await guest.wait_for_function(
                "window.cloudphone.sharing.clipboard === 'copied on the phone'"
            )
            await guest.click("#sharing summary")
            await guest.fill("#paste-text", "pasted in the browser")
            await guest.press("#paste-text", "Enter")
            await guest.wait_for_function(
                "window.cloudphone.sharing.errors.some(e => e.code === 'clipboard-forbidden')"
            )
            assert phone.clipboard == "copied on the phone"

            # A dial request from the phone reaches the owner only; the answer reaches the phone.
            await tap(guest, 0.5, 0.96)
            await eventually(lambda: phone.ui is not None and phone.ui.current == "home")
            await tap(guest, *icon("Dialer"))
            await eventually(lambda: phone.ui is not None and phone.ui.current == "Dialer")
            await guest.fill("#text", "+44 20 7946 0958")
            await guest.press("#text", "Enter")
            await eventually(lambda: phone.ui is not None and phone.ui.dialer.number != "")
            x0, y0, x1, y1 = LAYOUT.action_button()
            await tap(guest, (x0 + x1) / 2 / 720, (y0 + y1) / 2 / 1280)
            await owner.wait_for_selector("#telephony:has-text('+442079460958')")
            assert await guest.locator("#telephony").is_hidden()
            await owner.click("#telephony-confirm")
            await eventually(lambda: "confirmed" in phone.telephony_answers.values())
            assert await owner.evaluate("window.cloudphone.sharing.handsetUrls") == [
                "tel:+442079460958"
            ]
            assert await guest.evaluate("window.cloudphone.sharing.telephony.length") == 0

            # The owner takes control back; then revoking the invite disconnects the guest.
            await owner.click("#take-control")
            await guest.wait_for_selector("#control-state:text('developer has control')")
            await owner.click("[data-revoke='guest-bob']")
            await owner.wait_for_function(
                "window.cloudphone.sharing.invites.some(i => i.label === 'guest-bob' && i.revoked)"
            )
            await guest.wait_for_function("window.cloudphone.closedReason !== null")
            assert await guest.evaluate("window.cloudphone.closedReason") == "invite revoked"
            await eventually(lambda: len(edge.node.sessions) == 1)

            # Idle timeout: a policy change applies to the open session at once.
            edge.node.policies.set_phone("phone-1", {"idle_timeout_s": 1.0})
            await owner.wait_for_function(
                "window.cloudphone.closedReason === 'idle timeout'", timeout=8000
            )
            assert await owner.locator("#banner").inner_text() == "idle timeout"
        finally:
            await browser.close()
