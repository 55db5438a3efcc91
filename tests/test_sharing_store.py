"""Sharing with the control plane on: invites, policies and the audit log in its SQLite store.

Real SQLite files, real edges on 127.0.0.1 restarted on the same database, real aiortc peers:
an invite outlives a restart (uses counted, revocation still disconnects), racing redeems never
spend one use twice, a policy set through /api/v1 is still enforced after a restart, and the
audit log of a session is readable through /api/v1/audit by its organisation's admin only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from cloudphone.edge.app import NODE
from cloudphone.edge.audit import AuditLog, AuditSink
from cloudphone.edge.client import PhoneClient, SignalingError
from cloudphone.edge.control.audit_db import StoredAudit
from cloudphone.edge.control.config import ControlConfig
from cloudphone.edge.control.invites_db import StoredInvites
from cloudphone.edge.control.openapi import openapi_document
from cloudphone.edge.control.policies_db import StoredPolicyBook
from cloudphone.edge.control.sqlite_store import SQLiteStore, StoreError
from cloudphone.edge.policy import PolicyBook
from cloudphone.edge.sharing.invites import Invite, InviteBook, InviteError, MemoryInviteStore

from tests.conftest import Edge, EdgeFactory, eventually
from tests.control_site import Browser, Site, site_fixture  # noqa: F401  (the fixture)
from tests.control_support import check_documented
from tests.test_sharing import invite, refused, reply, send, state

ADMIN = "store-admin-token"
DOC = openapi_document()


async def api(edge: Edge, method: str, path: str, expect: int = 200, body: Any = None) -> Any:
    """/api/v1 with the admin token; checks the status and that OpenAPI describes the reply."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with edge.http.request(
        method, edge.url("/api/v1" + path), json=body, headers=headers
    ) as resp:
        reply_body = await resp.json()
        assert resp.status == expect, (resp.status, reply_body)
    check_documented(DOC, method, path, expect, reply_body)
    return reply_body


async def admin(edge: Edge, method: str, path: str, expect: int = 200) -> Any:
    """The edge's own admin API (/edge/admin) with the same token."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with edge.http.request(method, edge.url(path), headers=headers) as resp:
        assert resp.status == expect, (resp.status, await resp.text())
        return await resp.json()


async def restart(make_edge: EdgeFactory, edge: Edge, db: Path) -> Edge:
    """Stop `edge` (its viewers first: a connected one holds the server's shutdown for its
    timeout) and start a new one on the same database."""
    for client in edge.clients:
        await client.close()
    await edge.server.close()
    return await make_edge(control_db=str(db), admin_token=ADMIN)


async def with_owner(make_edge: EdgeFactory, db: Path) -> tuple[Edge, PhoneClient]:
    """An edge with the control plane on `db`, and an owner (admin token) on phone-1."""
    edge = await make_edge(control_db=str(db), admin_token=ADMIN)
    return edge, await edge.viewer(codec="h264", token=ADMIN)


# -- invites ---------------------------------------------------------------------------------


async def test_an_invite_outlives_a_restart_and_revoking_it_still_disconnects(
    make_edge: EdgeFactory, tmp_path: Path
) -> None:
    db = tmp_path / "control.db"
    edge, owner = await with_owner(make_edge, db)
    token = await invite(owner, kind="view", label="guest-ann", maxUses=2)
    first = await edge.viewer(codec="h264", token=token, role="viewer")
    assert first.welcome["role"] == "viewer"

    edge = await restart(make_edge, edge, db)
    second = await edge.viewer(codec="h264", token=token, role="viewer")
    await second.wait_for_frame(lambda f: True)
    with pytest.raises(SignalingError) as err:  # the use before the restart counted
        await edge.viewer(codec="h264", token=token, role="viewer")
    assert "used up" in err.value.message
    with pytest.raises(SignalingError):  # a guessed token: refused, not audited
        await edge.viewer(codec="h264", token="cpi_guessed", role="viewer")
    await edge.node.audit.flush()
    tries = (await api(edge, "GET", "/audit?phone=phone-1&action=invite"))["entries"]
    assert [(e["action"], e["details"].get("uses"), e["details"].get("reason")) for e in tries][
        :3
    ] == [("invite/refused", None, "invite-used-up"), ("invite/use", 2, None),
          ("invite/use", 1, None)]  # fmt: skip
    [listed] = (await admin(edge, "GET", "/edge/admin/phones/phone-1/invites"))["invites"]
    assert listed["uses"] == 2 and listed["label"] == "guest-ann" and not listed["revoked"]
    assert listed["createdBy"] == "admin"

    await admin(edge, "DELETE", f"/edge/admin/invites/{listed['id']}")
    await eventually(lambda: second.closed_reason == "invite revoked")

    # Revoked stays revoked after another restart; the owner's page lists it so.
    edge = await restart(make_edge, edge, db)
    owner = await edge.viewer(codec="h264", token=ADMIN)
    send(owner, "invites/list")
    [again] = (await reply(owner, "invites/list"))["invites"]
    assert again["id"] == listed["id"] and again["revoked"] and again["uses"] == 2
    with pytest.raises(SignalingError) as err:
        await edge.viewer(codec="h264", token=token, role="viewer")
    assert "revoked" in err.value.message

    # Two guests racing for the last use of a fresh invite: exactly one gets in.
    once = await invite(owner, kind="view", label="guest-race", maxUses=1)
    results = await asyncio.gather(
        *(edge.viewer(codec="h264", token=once, role="viewer") for _ in range(2)),
        return_exceptions=True,
    )
    joined = [r for r in results if isinstance(r, PhoneClient)]
    refused_ = [r for r in results if isinstance(r, SignalingError)]
    assert len(joined) == 1 and len(refused_) == 1, results
    assert "used up" in refused_[0].message


async def test_racing_redeems_from_two_edges_never_spend_a_use_twice(tmp_path: Path) -> None:
    path = str(tmp_path / "race.db")
    stores = [SQLiteStore(path), SQLiteStore(path)]  # two processes' worth of connections
    for store in stores:
        await store.open()
    try:
        books = [InviteBook(StoredInvites(s)) for s in stores]
        for max_uses in (1, 3):
            _, token = await books[0].create(
                "phone-1", kind="view", label="race", ttl_s=60, max_uses=max_uses, created_by="t"
            )
            results = await asyncio.gather(
                *(books[i % 2].redeem(token, "phone-1") for i in range(8)),
                return_exceptions=True,
            )
            won = [r for r in results if isinstance(r, Invite)]
            lost = [r for r in results if isinstance(r, InviteError)]
            assert len(won) == max_uses and len(lost) == 8 - max_uses, results
            assert {e.code for e in lost} == {"invite-used-up"}
            stored = await books[1].get(won[0].invite_id)
            assert stored is not None and stored.uses == max_uses
    finally:
        for store in stores:
            await store.close()


@pytest.mark.parametrize("where", ["memory", "sqlite"])
async def test_both_invite_stores_refuse_with_the_same_codes(tmp_path: Path, where: str) -> None:
    now = [1000.0]
    db = SQLiteStore(str(tmp_path / "codes.db"))
    await db.open()
    try:
        book = InviteBook(
            MemoryInviteStore() if where == "memory" else StoredInvites(db), clock=lambda: now[0]
        )
        made, token = await book.create(
            "phone-1", kind="control", label="x", ttl_s=10, max_uses=5, created_by="owner"
        )
        cases = [
            ("cpi_nothing", "phone-1", "invite-unknown"),
            (token, "phone-2", "invite-wrong-phone"),
        ]
        for bad, phone, code in cases:
            with pytest.raises(InviteError) as err:
                await book.redeem(bad, phone)
            assert err.value.code == code
        assert (await book.redeem(token, "phone-1")).uses == 1
        now[0] += 10
        with pytest.raises(InviteError) as err:
            await book.redeem(token, "phone-1")
        assert err.value.code == "invite-expired"
        now[0] -= 5
        revoked: list[Invite] = []
        book.events.on("revoked", revoked.append)
        await book.revoke(made.invite_id)
        await book.revoke(made.invite_id)  # twice: told once
        assert [i.invite_id for i in revoked] == [made.invite_id]
        with pytest.raises(InviteError) as err:
            await book.redeem(token, "phone-1")
        assert err.value.code == "invite-revoked"
        with pytest.raises(InviteError) as err:
            await book.revoke("no-such-id")
        assert err.value.code == "invite-unknown"
        [listed] = await book.of_instance("phone-1")
        assert listed.revoked and listed.uses == 1 and listed.kind == "control"
    finally:
        await db.close()


# -- policies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/phones/phone-1/policy", {"clipboard": "sideways"}, 400, "invalid_policy"),
        ("/phones/phone-1/policy", {"idle_timeout_s": "ten"}, 400, "invalid_policy"),
        ("/phones/phone-1/policy", {"idle_timeout_s": -5}, 400, "invalid_policy"),
        ("/phones/phone-1/policy", {"max_session_s": 10**9}, 400, "invalid_policy"),
        ("/phones/phone-1/policy", {"telephony": 1}, 400, "invalid_policy"),
        ("/phones/phone-1/policy", {"allowed_cidrs": ["10.0.0.0/33"]}, 400, "invalid_policy"),
        ("/phones/phone-1/policy", {"colour": "red"}, 400, "invalid_policy"),
        ("/phones/phone-1/policy", [1], 400, "invalid_json"),
        ("/phones/nope/policy", {"clipboard": "none"}, 404, "phone_not_found"),
        ("/orgs/999/policy", {"clipboard": "none"}, 404, "org_not_found"),
        ("/orgs/abc/policy", {"clipboard": "none"}, 404, "not_found"),
    ],
)
async def test_bad_policy_writes_are_refused_and_change_nothing(
    make_edge: EdgeFactory, tmp_path: Path, path: str, body: Any, status: int, code: str
) -> None:
    edge = await make_edge(control_db=str(tmp_path / "control.db"), admin_token=ADMIN)
    refusal = await api(edge, "PUT", path, status, body)
    assert refusal["error"]["code"] == code
    assert edge.node.policies.overrides("phone-1") == {}
    assert edge.node.policies.org_fields("999") == {}


async def test_policies_set_through_the_api_outlive_a_restart_and_are_enforced(
    make_edge: EdgeFactory, tmp_path: Path
) -> None:
    db = tmp_path / "control.db"
    edge = await make_edge(control_db=str(db), admin_token=ADMIN)
    org = await api(edge, "POST", "/orgs", 201, {"name": "Acme"})
    set_org = await api(
        edge, "PUT", f"/orgs/{org['id']}/policy", body={"watermark": "shared", "max_session_s": 60}
    )
    assert set_org["policy"] == {"watermark": "shared", "max_session_s": 60}
    set_phone = await api(
        edge,
        "PUT",
        "/phones/phone-1/policy",
        body={"clipboard": "phone-to-browser", "idle_timeout_s": 600},
    )
    assert set_phone["effective"]["clipboard"] == "phone-to-browser"
    dropped = await api(edge, "PUT", "/phones/phone-1/policy", body={"idle_timeout_s": None})
    assert dropped["overrides"] == {"clipboard": "phone-to-browser"}

    edge = await restart(make_edge, edge, db)
    phone = await api(edge, "GET", "/phones/phone-1/policy")
    assert phone["overrides"] == {"clipboard": "phone-to-browser"} and phone["org_id"] is None
    assert phone["effective"]["idle_timeout_s"] == 0
    kept = await api(edge, "GET", f"/orgs/{org['id']}/policy")
    assert kept["policy"] == {"watermark": "shared", "max_session_s": 60}
    assert kept["effective"]["clipboard"] == "both"
    # The same book behind /edge/admin, and the edge enforces it: no pasting into the phone.
    legacy = await admin(edge, "GET", "/edge/admin/policy/phones/phone-1")
    assert legacy["overrides"] == {"clipboard": "phone-to-browser"}
    owner = await edge.viewer(codec="h264", token=ADMIN)
    error = await refused(owner, "clipboard/set", text="secret")
    assert error["code"] == "clipboard-forbidden"


# -- the audit log ---------------------------------------------------------------------------


class SlowSink:
    def __init__(self, inner: AuditSink) -> None:
        self.inner = inner

    async def write(self, entries: Sequence[Mapping[str, Any]]) -> None:
        await asyncio.sleep(0.5)
        await self.inner.write(entries)


async def test_audit_entries_written_right_before_a_stop_are_kept(
    make_edge: EdgeFactory, tmp_path: Path
) -> None:
    db = tmp_path / "control.db"
    edge, owner = await with_owner(make_edge, db)
    session = owner.welcome["session"]
    # A slow disk: every write is still in flight when the edge begins to stop.
    assert edge.node.audit.sink is not None
    edge.node.audit.sink = SlowSink(edge.node.audit.sink)
    edge.node.audit.record("test/last-words", phone="phone-1", actor="tester", n=1)
    edge = await restart(make_edge, edge, db)
    entries = (await api(edge, "GET", "/audit?phone=phone-1"))["entries"]
    actions = [(e["action"], e["details"].get("session")) for e in entries]
    assert ("test/last-words", None) in actions
    assert ("session/join", session) in actions
    leave = next(e for e in entries if e["action"] == "session/leave")
    assert leave["details"]["session"] == session and leave["actor"] == "admin"
    last = next(e for e in entries if e["action"] == "test/last-words")
    assert last["details"] == {"n": 1} and last["org_id"] is None


async def _org_admin(site: Site, org_id: int, login: str, password: str) -> Browser:
    await site.admin.call(
        "POST",
        "/users",
        201,
        json_body={
            "login": login,
            "name": login.title(),
            "mobile": "+8613900000" + str(org_id).zfill(3),
            "org_id": org_id,
            "role": "admin",
            "password": password,
        },
    )
    browser = site.browser()
    await browser.full_login(login, password)
    return browser


async def test_a_sessions_audit_is_read_by_its_org_admin_only(site: Site) -> None:
    seeded = await site.seed(users=1)
    sales, password = seeded["org"]["id"], seeded["password"]
    [phone] = await site.buy(1, flavor="probe")
    await site.admin.call(
        "POST", f"/phones/{phone}/assign", json_body={"user_id": seeded["users"][0]["id"]}
    )
    rivals = await site.admin.call("POST", "/orgs", 201, json_body={"name": "Rivals"})
    boss = await _org_admin(site, sales, "boss", password)
    rival = await _org_admin(site, rivals["id"], "rival", password)
    user = site.browser()
    await user.full_login("user0", password)

    # One session: the owner enters, invites a guest, hands control over, the guest pastes.
    ticket = await user.call("POST", f"/me/phones/{phone}/connect")
    owner = await site.viewer(phone, ticket["token"])
    guest_token = await invite(owner, kind="control", label="guest-cat")
    guest = await PhoneClient.connect(
        site.browsers[0].http, site.url("/ws"), phone, token=guest_token, role="viewer"
    )
    site.clients.append(guest)
    guest_session = guest.welcome["session"]
    send(guest, "control/request")
    await eventually(lambda: bool(state(owner).get("requests")))
    send(owner, "control/grant", session=guest_session)
    await eventually(lambda: state(guest).get("inControl") is True)
    send(guest, "clipboard/set", text="hello")
    assert (await reply(guest, "clipboard/ack"))["ok"] is True
    await site.server.app[NODE].audit.flush()

    entries = (await boss.call("GET", f"/audit?phone={phone}"))["entries"]
    actions = {e["action"] for e in entries}
    for action in ("session/join", "invite/create", "invite/use", "control/request",
                   "control/grant", "clipboard/to-phone"):  # fmt: skip
        assert action in actions, (action, actions)
    used = next(e for e in entries if e["action"] == "invite/use")
    assert used["actor"] == "guest-cat" and used["details"]["uses"] == 1
    assert {e["org_id"] for e in entries} == {sales}
    joined = next(e for e in entries if e["action"] == "session/join" and e["actor"] == "guest-cat")
    assert joined["details"]["kind"] == "guest-link" and joined["details"]["invite"]
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)

    # Filters and pages.
    mine = (await boss.call("GET", "/audit?actor=guest-cat&action=control"))["entries"]
    assert {e["action"] for e in mine} == {"control/request"}
    first = await boss.call("GET", f"/audit?phone={phone}&limit=2")
    assert len(first["entries"]) == 2 and first["next_before"] == first["entries"][-1]["id"]
    rest = await boss.call("GET", f"/audit?phone={phone}&before={first['next_before']}")
    assert rest["next_before"] is None
    assert [e["id"] for e in first["entries"] + rest["entries"]] == [e["id"] for e in entries]
    now = time.time()
    assert (await boss.call("GET", f"/audit?since={now + 60}"))["entries"] == []
    assert len((await boss.call("GET", f"/audit?until={now + 60}"))["entries"]) == len(entries)

    # Nobody else reads it: a plain user, another organisation's admin.
    assert (await user.call("GET", "/audit", 403))["error"]["code"] == "forbidden"
    await rival.call("GET", f"/audit?phone={phone}", 403)
    assert (await rival.call("GET", "/audit"))["entries"] == []
    assert len((await site.admin.call("GET", f"/audit?phone={phone}"))["entries"]) == len(entries)
    for query in ("limit=0", "limit=x", "since=abc", "since=5&until=1", "before=-1",
                  "since=1e300", "actor=" + "a" * 200):  # fmt: skip
        await boss.call("GET", f"/audit?{query}", 400)
    await site.admin.call("GET", "/audit?phone=nope", 404)

    # The organisation's policy reaches its phone at once; only its admin may set it.
    await rival.call("PUT", f"/orgs/{sales}/policy", 403, json_body={"clipboard": "both"})
    await rival.call("GET", f"/phones/{phone}/policy", 403)
    await user.call("GET", f"/orgs/{sales}/policy", 403)
    await boss.call("PUT", f"/orgs/{sales}/policy", json_body={"clipboard": "none"})
    error = await refused(guest, "clipboard/set", text="again")
    assert error["code"] == "clipboard-forbidden"
    seen = await boss.call("GET", f"/phones/{phone}/policy")
    assert seen["org_id"] == sales and seen["effective"]["clipboard"] == "none"
    await boss.call("PUT", f"/phones/{phone}/policy", json_body={"clipboard": "both"})
    send(guest, "clipboard/set", text="allowed again")
    assert (await reply(guest, "clipboard/ack", 3))["ok"] is True  # 2: the refusal
    # Writes with a login need the CSRF header, as every cookie write does.
    await boss.call("PUT", f"/orgs/{sales}/policy", 403, json_body={}, csrf=False)


async def test_the_audit_writer_flushes_batches_and_survives_a_failing_sink(
    caplog: pytest.LogCaptureFixture,
) -> None:
    written: list[str] = []

    class Sink:
        async def write(self, entries: Sequence[Mapping[str, Any]]) -> None:
            await asyncio.sleep(0.05)
            written.extend(str(e["actor"]) for e in entries)

    class Broken:
        async def write(self, entries: Sequence[Mapping[str, Any]]) -> None:
            raise RuntimeError("disk full")

    audit = AuditLog(sink=Sink())
    for i in range(5):
        audit.record("test/n", phone="phone-1", actor=str(i))
    await audit.flush()
    assert written == ["0", "1", "2", "3", "4"]
    audit.sink = Broken()
    audit.record("test/n", phone="phone-1", actor="lost")
    await audit.flush()  # logged, not raised; the ring still has it
    assert "store refused 1 entries" in caplog.text
    assert audit.entries(action="test")[-1]["actor"] == "lost"
    audit.sink = Sink()
    audit.record("test/n", phone="phone-1", actor="after")
    await audit.close()
    audit.record("test/n", phone="phone-1", actor="reopened")  # a closed log starts again
    await audit.close()
    assert written[-2:] == ["after", "reopened"]


async def test_stored_policies_that_this_version_refuses_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(str(tmp_path / "policies.db"))
    await store.open()
    try:
        async with store.transaction() as tx:
            for table, key, fields in (
                ("phone_policies", "phone_id", '{"clipboard": "sideways", "idle_timeout_s": 5}'),
                ("org_policies", "org", "not json"),
            ):
                await tx.execute(
                    f"INSERT INTO {table} ({key}, fields, updated_at) VALUES (?, ?, 0)",
                    ("x", fields),
                )
        book = PolicyBook(store=StoredPolicyBook(store, time.time))
        await book.load()
        assert book.overrides("x") == {"idle_timeout_s": 5}
        assert book.org_fields("x") == {}
        assert "stored field clipboard ignored" in caplog.text
        # The store refuses a write (closed): nothing changes in memory either.
        await store.close()
        with pytest.raises(StoreError):
            await book.save_phone("x", {"clipboard": "none"})
        assert book.for_phone("x").clipboard == "both"
    finally:
        await store.close()


async def test_audit_entries_older_than_the_retention_are_pruned(tmp_path: Path) -> None:
    db = SQLiteStore(str(tmp_path / "audit.db"))
    await db.open()
    try:
        audit = StoredAudit(db, retention_days=30)
        now = 100 * 86400
        old = {"at": now - 31 * 86400, "phone": "phone-1", "actor": "a", "action": "session/open"}
        recent = {
            "at": now - 29 * 86400,
            "phone": "phone-1",
            "actor": "b",
            "action": "session/open",
        }
        await audit.write([old, recent])
        await audit.prune(now)
        assert [e["actor"] for e in await audit.entries(orgs=None)] == ["b"]
        await audit.write([old])
        await audit.prune(now + 60)  # pruned at most once an hour
        assert len(await audit.entries(orgs=None)) == 2
        await audit.prune(now + 3600)
        assert [e["actor"] for e in await audit.entries(orgs=None)] == ["b"]
        await StoredAudit(db, retention_days=0).prune(now * 10)  # 0: keep forever
        assert len(await audit.entries(orgs=None)) == 1
    finally:
        await db.close()


@pytest.mark.parametrize("days", [-1, "365", 1.5, True])
def test_a_bad_audit_retention_is_refused_at_start(days: object) -> None:
    with pytest.raises(ValueError, match="audit_retention_days"):
        ControlConfig.from_dict({"audit_retention_days": days})
    assert ControlConfig.from_dict({"audit_retention_days": 0}).audit_retention_days == 0
