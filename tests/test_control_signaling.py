"""Signaling with the control plane on: only connect tokens (and admin tokens) open a phone.

Real edge, real simulated phones, real aiortc peers: user A can never reach user B's phone, a
forged or stale token is refused, and unassigning a phone ends its user's live session.
"""

from __future__ import annotations

from typing import Any

import pytest
from cloudphone.edge.client import SignalingError

from tests.conftest import eventually
from tests.control_site import TOKEN, Site, site_fixture  # noqa: F401  (the fixture)


async def _two_users_with_phones(
    site: Site,
) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    seeded = await site.seed()
    a_phone, b_phone = await site.buy(2, flavor="probe")
    alice, bob = site.browser(), site.browser()
    u0, u1 = seeded["users"]
    await site.admin.call("POST", f"/phones/{a_phone}/assign", json_body={"user_id": u0["id"]})
    await site.admin.call("POST", f"/phones/{b_phone}/assign", json_body={"user_id": u1["id"]})
    await alice.full_login("user0", seeded["password"])
    await bob.full_login("user1", seeded["password"])
    return {"browser": alice, "user": u0}, {"browser": bob, "user": u1}, a_phone, b_phone


async def test_a_user_reaches_their_phone_and_never_another(site: Site) -> None:
    alice, bob, a_phone, b_phone = await _two_users_with_phones(site)
    ticket = await alice["browser"].call("POST", f"/me/phones/{a_phone}/connect")
    client = await site.viewer(a_phone, ticket["token"])
    await client.wait_for_frame(lambda f: f.stamp is not None, timeout=15)
    seq = client.touch("down", 0.5, 0.5)
    await client.wait_for_frame(
        lambda f: f.stamp is not None and f.stamp.input_seq >= seq, timeout=15
    )

    # Alice's token names her phone: it does not open Bob's.
    with pytest.raises(SignalingError) as err:
        await site.viewer(b_phone, ticket["token"])
    assert err.value.code == "forbidden"
    # Rewriting the phone (or the user) inside the token breaks its signature: forbidden.
    bob_id = str(bob["user"]["id"])
    parts = ticket["token"].split(".")
    for forged in (
        ticket["token"].replace(a_phone, b_phone),
        ".".join([parts[0], bob_id, b_phone, *parts[3:]]),
        f"cpc1.{bob_id}.{b_phone}.9999999999.c2lnbmF0dXJl",
    ):
        with pytest.raises(SignalingError) as err:
            await site.viewer(b_phone, forged)
        assert err.value.code == "forbidden"
    # No token, or something that is no token at all: unauthorized (no open dev access).
    for token in (None, "letmein"):
        with pytest.raises(SignalingError) as err:
            await site.viewer(a_phone, token)
        assert err.value.code == "unauthorized"
    site.clock.advance(site.plane.config.connect_token_ttl_s + 1)
    with pytest.raises(SignalingError) as err:
        await site.viewer(a_phone, ticket["token"])
    assert err.value.code == "unauthorized"
    # The admin token still opens any phone.
    admin_view = await site.viewer(b_phone, TOKEN)
    frame = await admin_view.wait_for_frame(lambda f: f.stamp is not None, timeout=15)
    # Her data channel drove her phone only: Bob's phone never applied an input.
    assert frame.stamp is not None and frame.stamp.input_seq == 0


async def test_unassigning_ends_the_users_live_session(site: Site) -> None:
    alice, _, a_phone, _ = await _two_users_with_phones(site)
    ticket = await alice["browser"].call("POST", f"/me/phones/{a_phone}/connect")
    client = await site.viewer(a_phone, ticket["token"])
    await client.wait_for_frame(lambda f: f.stamp is not None, timeout=15)
    await site.admin.call("DELETE", f"/phones/{a_phone}/assign")
    await eventually(lambda: client.closed_reason is not None)
    assert client.closed_reason == "unassigned: the phone was taken from this user"
    # The token she still holds is now useless, and she cannot get a new one.
    with pytest.raises(SignalingError) as err:
        await site.viewer(a_phone, ticket["token"])
    assert err.value.code == "forbidden"
    await alice["browser"].call("POST", f"/me/phones/{a_phone}/connect", 403)
    assert (await alice["browser"].call("GET", "/me/phones"))["count"] == 0


async def test_edge_phones_keep_the_edge_policy_and_sold_phones_need_tokens(site: Site) -> None:
    from cloudphone.edge.auth import DevelopmentAuthorizer
    from cloudphone.vm.pool import GuestSpec

    site.plane.authorizer.fallback = DevelopmentAuthorizer()  # as `make run` in dev mode
    await site.plane.pool.create("dev-1", GuestSpec("simulated", 320, 568, 30, {"stamp": True}))
    open_view = await site.viewer("dev-1", None)
    await open_view.wait_for_frame(lambda f: f.stamp is not None, timeout=15)
    [sold] = await site.buy(flavor="probe")
    with pytest.raises(SignalingError) as err:
        await site.viewer(sold, None)
    assert err.value.code == "unauthorized"
