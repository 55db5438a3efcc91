"""The user's journey in real headless Chromium: login, code, trust, selection, enter, touch,
logout, login again without a code, and an expired session that returns the user to their phone.
"""

from __future__ import annotations

from typing import Any

import pytest
from cloudphone.vm.simulated import SimulatedPhone
from cloudphone.vm.simulated.ui import Layout

from benchmarks.browser import launch, unavailable_reason
from tests.conftest import eventually
from tests.control_site import Site, site_fixture  # noqa: F401  (the fixture)

REASON = unavailable_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(REASON is not None, reason=f"BROWSER TESTS SKIPPED: {REASON}"),
]
W, H = 320, 568  # the probe flavor's screen


async def _login(page: Any, site: Site, account: str, password: str, *, trust: bool) -> bool:
    """Fill the login page; return whether a code was asked for."""
    await page.wait_for_selector("#account")
    await page.fill("#account", account)
    await page.fill("#password", password)
    codes_before = len([n for n in site.notices() if n["kind"] == "verification_code"])
    await page.click("#login")
    await page.wait_for_function(
        "window.cloudphoneLogin && ['challenge', 'session'].includes(window.cloudphoneLogin.state)"
        " || !location.pathname.endsWith('login.html')")
    if not await page.is_visible("#code-form"):
        return False
    await eventually(lambda: len([n for n in site.notices()
                                  if n["kind"] == "verification_code"]) > codes_before)
    code = [n for n in site.notices() if n["kind"] == "verification_code"][-1]["payload"]["code"]
    await page.fill("#code", code)
    if trust:
        await page.check("#trust")
    await page.click("#verify")
    return True


async def _tap_icon(page: Any, name: str) -> None:
    box = await page.locator("#video").bounding_box()
    scale = min(box["width"] / W, box["height"] / H)
    w, h = W * scale, H * scale
    _, x0, y0, x1, y1 = next(r for r in Layout(W, H).icon_rects() if r[0] == name)
    x = box["x"] + (box["width"] - w) / 2 + (x0 + x1) / 2 / W * w
    y = box["y"] + (box["height"] - h) / 2 + (y0 + y1) / 2 / H * h
    await page.touchscreen.tap(x, y)


async def _wait_playing(page: Any) -> None:
    await page.wait_for_function(
        "window.cloudphone && window.cloudphone.connected"
        " && document.getElementById('video').videoWidth > 0", timeout=20000)


async def test_login_code_trust_select_enter_touch_logout_and_back_without_a_code(
    site: Site,
) -> None:
    from playwright.async_api import async_playwright

    seeded = await site.seed()
    user = seeded["users"][0]
    first, second = await site.buy(2, flavor="probe", name="mine")
    for phone in (first, second):
        await site.admin.call("POST", f"/phones/{phone}/assign", json_body={"user_id": user["id"]})
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            context = await browser.new_context(
                viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
            page = await context.new_page()
            await page.goto(site.url("/h5/phones.html"))  # not logged in: to the login page
            await page.wait_for_url("**/h5/login.html?next=*")
            assert await _login(page, site, "user0", seeded["password"], trust=True)
            await page.wait_for_url("**/h5/phones.html")
            await page.wait_for_function("window.cloudphonePhones?.count === 2")
            assert await page.inner_text("#count") == "2"
            await page.click(f"li[data-id='{second}']")  # switch to the second phone
            assert await page.get_attribute(f"li[data-id='{second}']", "aria-selected") == "true"
            await page.click("#enter")
            await page.wait_for_url(f"**/phone/{second}")
            await _wait_playing(page)
            pool = site.plane.pool
            phone = pool.get(second)
            assert isinstance(phone, SimulatedPhone) and phone.ui is not None
            await _tap_icon(page, "Touch")
            await eventually(lambda: phone.ui is not None and phone.ui.current == "Touch")

            await page.goto(site.url("/h5/phones.html"))
            await page.wait_for_function("window.cloudphonePhones?.count === 2")
            await page.click("#logout")
            await page.wait_for_url("**/h5/login.html")
            assert not await _login(page, site, "user0", seeded["password"], trust=False)
            await page.wait_for_url("**/h5/phones.html")  # trusted: no code this time
            codes = [n for n in site.notices() if n["kind"] == "verification_code"]
            assert len(codes) == 1

            # The session expires while the user is on their phone: they log in again and
            # land on the same phone, streaming.
            await page.goto(site.url(f"/phone/{first}"))
            await _wait_playing(page)
            site.clock.advance(site.plane.config.session_ttl_s + 1)
            await page.reload()
            await page.wait_for_url("**/h5/login.html?next=*")
            assert not await _login(page, site, "user0", seeded["password"], trust=False)
            await page.wait_for_url(f"**/phone/{first}")
            await _wait_playing(page)
        finally:
            await browser.close()
