"""Control plane II through real HTTP: orgs, users, assignment, logins, codes, trusted browsers."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from tests.control_site import Site, site_fixture  # noqa: F401  (the fixture)


async def test_orgs_are_created_renamed_moved_and_deleted_only_when_empty(site: Site) -> None:
    admin = site.admin
    top = await admin.call("POST", "/orgs", 201, json_body={"name": "HQ"})
    sub = await admin.call("POST", "/orgs", 201, json_body={"name": "Ops", "parent_id": top["id"]})
    other = await admin.call("POST", "/orgs", 201, json_body={"name": "Field"})
    renamed = await admin.call("PATCH", f"/orgs/{sub['id']}", json_body={"name": "Operations"})
    assert renamed["name"] == "Operations" and renamed["parent_id"] == top["id"]
    moved = await admin.call("PATCH", f"/orgs/{sub['id']}", json_body={"parent_id": other["id"]})
    assert moved["parent_id"] == other["id"]
    err = await admin.call("PATCH", f"/orgs/{other['id']}", 409, json_body={"parent_id": sub["id"]})
    assert err["error"]["code"] == "org_cycle"
    err = await admin.call("DELETE", f"/orgs/{other['id']}", 409)
    assert err["error"]["code"] == "org_not_empty"
    await admin.call("DELETE", f"/orgs/{sub['id']}")
    await admin.call("DELETE", f"/orgs/{other['id']}")
    assert [o["name"] for o in (await admin.call("GET", "/orgs"))["orgs"]] == ["HQ"]
    for body, code in (({"name": ""}, "invalid_name"), ({"name": "x", "parent_id": 999}, None)):
        err = await admin.call("POST", "/orgs", 400 if code else 404, json_body=body)
        assert err["error"]["code"] == (code or "org_not_found")
    await admin.call("DELETE", "/orgs/999", 404)


BAD_USERS = [
    ({"login": "a"}, "invalid_login"),
    ({"login": "has space"}, "invalid_login"),
    ({"mobile": "call me"}, "invalid_mobile"),
    ({"password": "short"}, "invalid_password"),
    ({"password": 12345678}, "invalid_password"),
    ({"role": "root"}, "invalid_role"),
    ({"name": ""}, "invalid_name"),
    ({"org_id": "1"}, "invalid_org"),
]


@pytest.mark.parametrize(("change", "code"), BAD_USERS)
async def test_bad_users_are_refused_without_a_trace(
    site: Site, change: dict[str, Any], code: str
) -> None:
    org = await site.admin.call("POST", "/orgs", 201, json_body={"name": "O"})
    body = {
        "login": "alice",
        "name": "Alice",
        "mobile": "+8613800001111",
        "org_id": org["id"],
        "password": "long enough",
        **change,
    }
    err = await site.admin.call("POST", "/users", 400, json_body=body)
    assert err["error"]["code"] == code
    assert (await site.admin.call("GET", "/users"))["users"] == []


async def test_users_are_listed_renamed_moved_and_deleted_once_unbound(site: Site) -> None:
    seeded = await site.seed()
    u0 = seeded["users"][0]
    err = await site.admin.call(
        "POST",
        "/users",
        409,
        json_body={
            "login": "USER0",
            "name": "Again",
            "mobile": "+8613800009999",
            "org_id": seeded["org"]["id"],
            "password": "long enough",
        },
    )
    assert err["error"]["code"] == "login_taken"
    other = await site.admin.call("POST", "/orgs", 201, json_body={"name": "Support"})
    moved = await site.admin.call(
        "PATCH",
        f"/users/{u0['id']}",
        json_body={"org_id": other["id"], "name": "Zero", "role": "admin"},
    )
    assert (moved["org_id"], moved["name"], moved["role"]) == (other["id"], "Zero", "admin")
    listed = await site.admin.call("GET", f"/users?org_id={other['id']}")
    assert [u["login"] for u in listed["users"]] == ["user0"]
    [phone] = await site.buy()
    await site.admin.call("POST", f"/phones/{phone}/assign", json_body={"user_id": u0["id"]})
    assert (await site.admin.call("GET", f"/users/{u0['id']}"))["phones"] == 1
    err = await site.admin.call("DELETE", f"/users/{u0['id']}", 409)
    assert err["error"]["code"] == "user_has_phones"
    await site.admin.call("DELETE", f"/phones/{phone}/assign")
    await site.admin.call("DELETE", f"/users/{u0['id']}")
    await site.admin.call("GET", f"/users/{u0['id']}", 404)


async def test_passwords_are_scrypt_hashes_with_a_salt_per_user(site: Site) -> None:
    await site.seed(users=2, password="same password")
    db = sqlite3.connect(site.plane.config.db_path)
    try:
        hashes = [r[0] for r in db.execute("SELECT password_hash FROM users ORDER BY id")]
    finally:
        db.close()
    assert all(h.startswith("scrypt$16384$8$1$") for h in hashes)
    assert hashes[0] != hashes[1]  # same password, different salt
    assert "same password" not in "".join(hashes)


async def test_login_with_a_code_then_a_trusted_browser_skips_the_code(site: Site) -> None:
    seeded = await site.seed()
    browser = site.browser()
    reply = await browser.login("user0", seeded["password"])
    assert reply["status"] == "challenge" and reply["sent_to"].endswith("0000")
    assert "code" not in reply
    code = await site.code_for(reply["challenge"])
    assert len(code) == 6 and code.isdigit()
    session = await browser.verify(reply["challenge"], code, trust=True)
    assert session["user"]["login"] == "user0"
    assert browser.last is not None
    cookies = browser.last.headers.getall("Set-Cookie")
    assert any(
        c.startswith("cp_session=") and "HttpOnly" in c and "SameSite=Strict" in c for c in cookies
    )
    assert any(
        c.startswith("cp_device=") and "HttpOnly" in c and "Path=/api/v1/auth" in c for c in cookies
    )
    assert (await browser.call("GET", "/auth/session"))["user"]["login"] == "user0"
    await browser.call("POST", "/auth/logout")
    await browser.call("GET", "/auth/session", 401)
    again = await browser.login("user0", seeded["password"])
    assert again["status"] == "session"  # no code this time
    assert len([n for n in site.notices() if n["kind"] == "verification_code"]) == 1
    stranger = site.browser()  # another browser still gets a code
    assert (await stranger.login("user0", seeded["password"]))["status"] == "challenge"


async def test_a_code_is_single_use_and_expires_after_five_minutes(site: Site) -> None:
    seeded = await site.seed()
    b = site.browser()
    first = await b.login("user0", seeded["password"])
    code = await site.code_for(first["challenge"])
    await b.verify(first["challenge"], code)
    err = await b.verify(first["challenge"], code, expect=401)
    assert err["error"]["code"] == "invalid_challenge"
    second = await b.login("user0", seeded["password"])
    code = await site.code_for(second["challenge"])
    site.clock.advance(301)
    err = await b.verify(second["challenge"], code, expect=401)
    assert err["error"]["code"] == "invalid_challenge"


async def test_unknown_account_and_wrong_password_get_the_same_answer(site: Site) -> None:
    seeded = await site.seed()
    b = site.browser()
    wrong = await b.login("user0", "not the password", expect=401)
    unknown = await b.login("nobody", seeded["password"], expect=401)
    assert (
        wrong
        == unknown
        == {"error": {"code": "invalid_credentials", "message": "wrong account or password"}}
    )


async def test_five_wrong_codes_lock_the_account(site: Site) -> None:
    seeded = await site.seed()
    b = site.browser()
    reply = await b.login("user0", seeded["password"])
    code = await site.code_for(reply["challenge"])
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1, 0):
        err = await b.verify(reply["challenge"], wrong, expect=401)
        assert err["error"] == {"code": "wrong_code", "message": f"wrong code; {left} tries left"}
    err = await b.verify(reply["challenge"], code, expect=429)  # even the right code now
    assert err["error"]["code"] == "account_locked"
    err = await b.login("user0", seeded["password"], expect=429)
    assert err["error"]["code"] == "account_locked"
    site.clock.advance(site.plane.config.fail_window_s + 1)
    assert (await b.full_login("user0", seeded["password"]))["status"] == "session"


async def test_wrong_passwords_lock_known_and_unknown_accounts_alike(site: Site) -> None:
    seeded = await site.seed()
    b = site.browser()
    for account in ("user0", "ghost"):
        for _ in range(5):
            await b.login(account, "bad guess", expect=401)
        err = await b.login(account, seeded["password"], expect=429)
        assert err["error"]["code"] == "account_locked"
    ok = site.browser()  # the other user is not affected
    assert (await ok.login("user1", seeded["password"]))["status"] == "challenge"


async def test_one_address_is_limited_across_accounts(site: Site) -> None:
    seeded = await site.seed()
    b = site.browser()
    for i in range(20):
        await b.login(f"guess{i}", "bad guess", expect=401)
    err = await b.login("user0", seeded["password"], expect=429)
    assert err["error"]["code"] == "rate_limited"


async def test_cookie_writes_need_the_csrf_header(site: Site) -> None:
    seeded = await site.seed()
    b = site.browser()
    await b.full_login("user0", seeded["password"])
    err = await b.call("POST", "/auth/logout", 403, csrf=False)
    assert err["error"]["code"] == "csrf_failed"
    err = await b.call("POST", "/auth/logout", 403, csrf=False, headers={"X-CSRF-Token": "forged"})
    assert err["error"]["code"] == "csrf_failed"
    await b.call("GET", "/auth/session")  # still logged in
    await b.call("POST", "/auth/logout")


async def test_users_cannot_use_the_admin_api_and_admins_by_login_can(site: Site) -> None:
    seeded = await site.seed()
    user = site.browser()
    await user.full_login("user0", seeded["password"])
    for method, path in (
        ("GET", "/phones"),
        ("GET", "/users"),
        ("GET", "/ledger"),
        ("POST", "/account/recharge"),
    ):
        err = await user.call(method, path, 403, json_body={"amount_cents": 5})
        assert err["error"]["code"] == "forbidden"
    await site.admin.call(
        "PATCH", f"/users/{seeded['users'][1]['id']}", json_body={"role": "admin"}
    )
    boss = site.browser()
    await boss.full_login("user1", seeded["password"])
    assert (await boss.call("GET", "/account"))["balance_cents"] == 100_000
    await site.admin.call("GET", "/me/phones", 403)  # an admin token is not a user


async def test_binding_sends_a_notice_and_users_see_only_their_phones(site: Site) -> None:
    seeded = await site.seed()
    u0, u1 = seeded["users"]
    a1, a2, b1 = await site.buy(3)
    for phone, user in ((a1, u0), (a2, u0), (b1, u1)):
        await site.admin.call("POST", f"/phones/{phone}/assign", json_body={"user_id": user["id"]})
    err = await site.admin.call(
        "POST", f"/phones/{b1}/assign", 409, json_body={"user_id": u0["id"]}
    )
    assert err["error"]["code"] == "already_assigned"
    await site.plane.notices.flush()
    bound = [n for n in site.notices() if n["kind"] == "phone_bound"]
    assert sorted(n["recipient"] for n in bound) == sorted(
        [u0["mobile"], u0["mobile"], u1["mobile"]]
    )
    alice = site.browser()
    await alice.full_login("user0", seeded["password"])
    mine = await alice.call("GET", "/me/phones")
    assert mine["count"] == 2 and {p["id"] for p in mine["phones"]} == {a1, a2}
    err = await alice.call("POST", f"/me/phones/{b1}/connect", 403)
    assert err["error"]["code"] == "forbidden"
    await alice.call("GET", f"/phones/{b1}", 403)
    ticket = await alice.call("POST", f"/me/phones/{a1}/connect")
    assert ticket["instance"] == a1 and ticket["token"].startswith("cpc1.")


async def test_deleting_a_phone_unbinds_it(site: Site) -> None:
    seeded = await site.seed()
    u0 = seeded["users"][0]
    a, b = await site.buy(2)
    for phone in (a, b):
        await site.admin.call("POST", f"/phones/{phone}/assign", json_body={"user_id": u0["id"]})
    deleted = await site.admin.call("DELETE", f"/phones/{a}")
    assert deleted["phone"]["user_id"] is None
    alice = site.browser()
    await alice.full_login("user0", seeded["password"])
    mine = await alice.call("GET", "/me/phones")
    assert mine["count"] == 1 and mine["phones"][0]["id"] == b
    assert (await site.admin.call("GET", f"/users/{u0['id']}"))["phones"] == 1


async def test_password_change_and_admin_reset_end_sessions(site: Site) -> None:
    seeded = await site.seed()
    one, two = site.browser(), site.browser()
    await one.full_login("user0", seeded["password"])
    await two.full_login("user0", seeded["password"])
    err = await one.call(
        "POST",
        "/auth/password",
        401,
        json_body={"old_password": "wrong one", "new_password": "brand new pass"},
    )
    assert err["error"]["code"] == "invalid_credentials"
    await one.call(
        "POST",
        "/auth/password",
        json_body={"old_password": seeded["password"], "new_password": "brand new pass"},
    )
    await one.call("GET", "/auth/session", 401)
    await two.call("GET", "/auth/session", 401)
    await one.login("user0", seeded["password"], expect=401)
    await one.full_login("user0", "brand new pass")
    await site.admin.call(
        "POST",
        f"/users/{seeded['users'][0]['id']}/password",
        json_body={"password": "admin chose this"},
    )
    await one.call("GET", "/auth/session", 401)


async def test_trusted_browsers_are_revocable_by_the_user_and_the_admin(site: Site) -> None:
    seeded = await site.seed()
    b = site.browser()
    await b.full_login("user0", seeded["password"], trust=True)
    [device] = (await b.call("GET", "/me/devices"))["devices"]
    assert device["label"].startswith("Python/")  # the browser's User-Agent, to recognise it
    await b.call("DELETE", f"/me/devices/{device['id']}")
    await b.call("DELETE", f"/me/devices/{device['id']}", 404)
    assert (await b.login("user0", seeded["password"]))["status"] == "challenge"
    await b.full_login("user0", seeded["password"], trust=True)
    await site.admin.call("DELETE", f"/users/{seeded['users'][0]['id']}/devices")
    assert (await b.login("user0", seeded["password"]))["status"] == "challenge"


async def test_sessions_expire(site: Site) -> None:
    seeded = await site.seed()
    b = site.browser()
    await b.full_login("user0", seeded["password"])
    site.clock.advance(site.plane.config.session_ttl_s + 1)
    err = await b.call("GET", "/me/phones", 401)
    assert err["error"]["code"] == "unauthorized"


async def test_codes_sent_per_account_are_limited(site: Site) -> None:
    seeded = await site.seed()
    b = site.browser()
    for _ in range(site.plane.config.codes_per_window):
        assert (await b.login("user0", seeded["password"]))["status"] == "challenge"
    err = await b.login("user0", seeded["password"], expect=429)
    assert err["error"]["code"] == "too_many_codes"


async def test_frozen_phones_show_as_such_and_cannot_be_entered(site: Site) -> None:
    seeded = await site.seed(money=0)
    [phone] = await site.buy()
    await site.admin.call(
        "POST", f"/phones/{phone}/assign", json_body={"user_id": seeded["users"][0]["id"]}
    )
    b = site.browser()
    await b.full_login("user0", seeded["password"])
    site.clock.advance(3600)
    await site.plane.billing.tick()  # an hour on an empty balance: arrears, frozen
    [mine] = (await b.call("GET", "/me/phones"))["phones"]
    assert (mine["state"], mine["usable"]) == ("frozen", False)
    err = await b.call("POST", f"/me/phones/{phone}/connect", 409)
    assert err["error"]["code"] == "phone_unavailable"


async def test_old_login_records_are_pruned(site: Site) -> None:
    seeded = await site.seed()
    b = site.browser()
    await b.login("user0", "wrong guess", expect=401)
    await b.full_login("user0", seeded["password"])
    site.clock.advance(3 * 86400)
    await site.plane.billing.tick()
    async with site.plane.store.transaction() as tx:
        left = [
            await tx.fetchone(f"SELECT COUNT(*) AS n FROM {t}")
            for t in ("auth_failures", "challenges", "sessions")
        ]
    assert [r["n"] for r in left if r] == [0, 0, 0]


async def test_a_code_raced_by_two_requests_opens_one_session(site: Site) -> None:
    seeded = await site.seed()
    b1, b2 = site.browser(), site.browser()
    reply = await b1.login("user0", seeded["password"])
    code = await site.code_for(reply["challenge"])
    body = {"challenge": reply["challenge"], "code": code, "trust_browser": False}
    results = await asyncio.gather(
        *(b.http.post(site.url("/api/v1/auth/verify"), json=body) for b in (b1, b2))
    )
    for r in results:
        r.release()
    assert sorted(r.status for r in results) == [200, 401]
