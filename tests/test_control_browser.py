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
        " || !location.pathname.endsWith('login.html')"
    )
    if not await page.is_visible("#code-form"):
        return False
    assert not await page.is_visible("#password-form")  # one step at a time
    await eventually(
        lambda: len([n for n in site.notices() if n["kind"] == "verification_code"]) > codes_before
    )
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
        " && document.getElementById('video').videoWidth > 0",
        timeout=20000,
    )


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
                viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True
            )
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

            await page.click("#title a")  # back to the selection, the last phone still chosen
            await page.wait_for_url("**/h5/phones.html")
            await page.wait_for_function("window.cloudphonePhones?.count === 2")
            assert await page.get_attribute(f"li[data-id='{second}']", "aria-selected") == "true"
            await page.click("#logout")
            await page.wait_for_url("**/h5/login.html")
            assert not await _login(page, site, "user0", seeded["password"], trust=False)
            await page.wait_for_url("**/h5/phones.html")  # trusted: no code this time
            codes = [n for n in site.notices() if n["kind"] == "verification_code"]
            assert len(codes) == 1
            await page.click("#devices-box summary")  # the browser she trusted is listed
            await page.wait_for_selector("#devices li")
            assert "Chrome" in await page.inner_text("#devices li .name")

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


async def test_admin_console_recharges_buys_assigns_and_shows_the_ledger(site: Site) -> None:
    from playwright.async_api import async_playwright

    seeded = await site.seed(money=0)
    await site.admin.call(
        "PATCH", f"/users/{seeded['users'][1]['id']}", json_body={"role": "admin"}
    )
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await (
                await browser.new_context(viewport={"width": 1100, "height": 900})
            ).new_page()
            page.on("dialog", lambda dialog: dialog.accept())
            await page.goto(site.url("/h5/login.html"))
            assert await _login(page, site, "user1", seeded["password"], trust=False)
            await page.wait_for_url("**/h5/admin.html")
            await page.wait_for_function("window.cloudphoneAdmin?.ready")
            await page.fill("#recharge-amount", "12.34")
            await page.click("#recharge-form button")
            await page.wait_for_function(
                "document.getElementById('balance').textContent === '12.34'"
            )
            await page.select_option("#buy-flavor", "quiet")
            await page.fill("#buy-name", "web")
            await page.fill("#buy-count", "2")
            await page.click("#buy-form button")
            await page.wait_for_function("document.querySelectorAll('#phones tr').length === 2")
            first = await page.get_attribute("#phones tr", "data-id")
            await page.select_option(
                f"#phones tr[data-id='{first}'] select", str(seeded["users"][0]["id"])
            )
            await page.wait_for_function(
                f"document.querySelector(\"#phones tr[data-id='{first}']\").textContent.includes('user0')"
            )
            await page.click(f"#phones tr[data-id='{first}'] button:text('delete')")
            await page.wait_for_function("document.querySelectorAll('#phones tr').length === 1")
            kinds = await page.eval_on_selector_all(
                "#ledger tr td:nth-child(2)", "els => els.map(e => e.textContent)"
            )
            assert kinds[-1] == "recharge"
            assert await page.inner_text("#error") == ""
        finally:
            await browser.close()
    phone = await site.admin.call("GET", f"/phones/{first}")
    assert phone["state"] == "released" and phone["user_id"] is None
    assert (await site.admin.call("GET", "/account"))["balance_cents"] == 1234
