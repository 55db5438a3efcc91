"""Sharing, security policy and telephony over real WebRTC peers (aiortc clients, real edge).

Each test drives the protocol the H5 player speaks: the owner creates invites on the `control`
channel, guests join with the invite token, control is requested and granted, the simulated
phone's dialer asks for a call. Forged and malformed requests get a clear error and change
nothing for the other sessions.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
import pytest
from cloudphone.edge.client import PhoneClient, SignalingError
from cloudphone.edge.pipeline import stream_key
from cloudphone.edge.sharing.control_handoff import ControlFloor, HandoffError, Member
from cloudphone.edge.telephony import TelephonyError, normalise_number
from cloudphone.edge.watermark import mark_mask, mark_text
from cloudphone.vm.simulated import SimulatedPhone
from cloudphone.vm.simulated.ui import Layout

from tests.conftest import Edge, EdgeFactory, eventually

LAYOUT = Layout(720, 1280)


def controls(client: PhoneClient, kind: str) -> list[dict[str, Any]]:
    return [m for m in client.channel_messages["control"] if m.get("type") == kind]


def errors(client: PhoneClient, channel: str = "control") -> list[dict[str, Any]]:
    return [m for m in client.channel_messages[channel] if m.get("type") == "error"]


def send(client: PhoneClient, kind: str, /, **fields: Any) -> None:
    client.channels["control"].send(json.dumps({"type": kind, **fields}))


async def reply(client: PhoneClient, kind: str, count: int = 1) -> dict[str, Any]:
    await eventually(lambda: len(controls(client, kind)) >= count)
    return controls(client, kind)[count - 1]


async def refused(client: PhoneClient, kind: str, /, **fields: Any) -> dict[str, Any]:
    """Send a control message that must be refused; returns the error it got."""
    before = len(errors(client))
    send(client, kind, **fields)
    await eventually(lambda: len(errors(client)) > before)
    error = errors(client)[before]
    assert error["request"] == kind, error
    return error


async def input_error(client: PhoneClient) -> dict[str, Any]:
    await eventually(lambda: bool(errors(client, "input")))
    return errors(client, "input")[-1]


def phone_of(edge: Edge) -> SimulatedPhone:
    phone = edge.pool.get("phone-1")
    assert isinstance(phone, SimulatedPhone)
    return phone


def icon(name: str) -> tuple[float, float]:
    _, x0, y0, x1, y1 = next(r for r in LAYOUT.icon_rects() if r[0] == name)
    return (x0 + x1) / 2 / 720, (y0 + y1) / 2 / 1280


async def invite(owner: PhoneClient, kind: str = "control", label: str = "guest-bob",
                 **extra: Any) -> str:  # fmt: skip
    count = len(controls(owner, "invites/created")) + 1
    send(owner, "invites/create", kind=kind, label=label, **extra)
    created = await reply(owner, "invites/created", count)
    assert created["invite"]["kind"] == kind and created["path"].endswith("role=viewer")
    return str(created["token"])


def state(client: PhoneClient) -> dict[str, Any]:
    """The last `control/state` the client got ({} before the first one arrives)."""
    states = controls(client, "control/state")
    return states[-1] if states else {}


# -- pure rules ------------------------------------------------------------------------------


def test_control_floor_rules() -> None:
    floor = ControlFloor()
    floor.join(Member("o", "owner", "owner", True))
    floor.join(Member("c", "bob", "viewer", True))
    floor.join(Member("v", "eve", "viewer", False))
    assert floor.holds("o")
    with pytest.raises(HandoffError) as exc:
        floor.request("v")
    assert exc.value.code == "forbidden"
    floor.request("c")
    with pytest.raises(HandoffError):
        floor.grant("v", "v")  # a viewer cannot grant, not even to itself
    with pytest.raises(HandoffError):
        floor.grant("o", "v")  # view-only can never hold control
    floor.grant("o", "c")
    assert floor.holds("c") and not floor.requests
    with pytest.raises(HandoffError):
        floor.take("c")  # only owners take
    floor.revoke("c")  # the controller gives it back: to the owner
    assert floor.holds("o")
    floor.grant("o", "c")
    floor.leave("c")
    assert floor.holds("o"), "control falls back to the owner when the controller leaves"
    floor.leave("o")
    assert floor.holder is None


@pytest.mark.parametrize("number", ["+44 20 7946 0958", "+1 (555) 010-0199", "112", "0033"])
def test_phone_numbers(number: str) -> None:
    if number == "0033":
        with pytest.raises(TelephonyError):
            normalise_number(number)
    else:
        assert normalise_number(number).lstrip("+").isdigit()


@pytest.mark.parametrize(
    "bad", ["", "+", "abc", "+12", "+1234567890123456", "12;rm", 12345, "1" * 40]
)
def test_invalid_phone_numbers_are_refused(bad: object) -> None:
    with pytest.raises(TelephonyError) as exc:
        normalise_number(bad)
    assert exc.value.code == "invalid-number"


# -- over WebRTC -----------------------------------------------------------------------------


async def test_viewer_input_is_dropped_until_control_is_granted(edge: Edge) -> None:
    owner = await edge.viewer(codec="h264")
    phone = phone_of(edge)
    token = await invite(owner)
    guest = await edge.viewer(codec="h264", token=token, role="viewer")
    assert guest.welcome["name"] == "guest-bob" and guest.welcome["canControl"] is True
    await reply(guest, "control/state")
    assert state(guest)["inControl"] is False

    guest.tap(*icon("Notes"))
    error = await input_error(guest)
    assert error["code"] == "forbidden" and "control" in error["message"]
    await asyncio.sleep(0.3)
    assert phone.ui is not None and phone.ui.current == "home"

    # Forged hand-off messages: refused, nothing changes.
    assert (await refused(guest, "control/grant", session=guest.welcome["session"]))[
        "code"
    ] == "forbidden"
    assert (await refused(guest, "control/take"))["code"] == "forbidden"
    assert (await refused(guest, "viewers/kick", session=owner.welcome["session"]))[
        "code"
    ] == "forbidden"
    assert (await refused(owner, "control/grant", session="no-such-session"))[
        "code"
    ] == "unknown-session"
    assert state(owner)["controller"] == owner.welcome["session"]

    send(guest, "control/request")
    await eventually(lambda: [r["name"] for r in state(owner).get("requests", [])] == ["guest-bob"])
    send(owner, "control/grant", session=guest.welcome["session"])
    await eventually(lambda: state(guest).get("inControl") is True)
    guest.tap(*icon("Notes"))
    await eventually(lambda: phone.ui is not None and phone.ui.current == "Notes")

    # The owner's input is now dropped too, until the owner takes control back.
    owner.nav("home")
    assert (await input_error(owner))["code"] == "forbidden"
    send(owner, "control/take")
    await eventually(lambda: state(guest).get("inControl") is False)
    owner.nav("home")
    await eventually(lambda: phone.ui is not None and phone.ui.current == "home")
    actions = [e["action"] for e in edge.node.audit.entries(phone="phone-1")]
    for action in ("invite/create", "session/join", "control/request", "control/grant",
                   "control/take"):  # fmt: skip
        assert action in actions


async def test_invites_expire_run_out_are_revoked_and_view_only(edge: Edge) -> None:
    owner = await edge.viewer(codec="h264")
    # Bad invite requests get clear errors.
    assert (await refused(owner, "invites/create", kind="admin", label="x"))["code"] == "bad-invite"
    assert "maxUses" in (await refused(owner, "invites/create", kind="view", label="x",
                                       maxUses=0))["message"]  # fmt: skip

    once = await invite(owner, kind="view", label="viewer-once", maxUses=1)
    viewer = await edge.viewer(codec="h264", token=once, role="viewer")
    await viewer.wait_for_frame(lambda f: True)
    assert (await refused(viewer, "control/request"))["code"] == "forbidden"
    with pytest.raises(SignalingError) as exc:
        await edge.viewer(codec="h264", token=once, role="viewer")
    assert exc.value.code == "unauthorized" and "used up" in exc.value.message

    short = await invite(owner, kind="view", label="late", ttlS=1)
    await asyncio.sleep(1.2)
    with pytest.raises(SignalingError) as exc:
        await edge.viewer(codec="h264", token=short, role="viewer")
    assert "expired" in exc.value.message
    with pytest.raises(SignalingError) as exc:
        await edge.viewer(codec="h264", token="cpi_forged", role="viewer")
    assert "not valid" in exc.value.message

    # Revoking disconnects whoever came in with it; the owner keeps streaming.
    send(owner, "invites/list")
    listed = await reply(owner, "invites/list")
    revoked = next(i for i in listed["invites"] if i["label"] == "viewer-once")
    send(owner, "invites/revoke", id=revoked["id"])
    await eventually(lambda: viewer.closed_reason == "invite revoked")
    before = owner.frames_received
    phone_of(edge).request_refresh()
    await eventually(lambda: owner.frames_received > before)
    assert len(edge.node.sessions) == 1


async def test_clipboard_policy_directions_and_size(edge: Edge) -> None:
    edge.node.policies.set_phone("phone-1", {"clipboard": "browser-to-phone",
                                             "clipboard_max_bytes": 1000})  # fmt: skip
    owner = await edge.viewer(codec="h264")
    phone = phone_of(edge)
    send(owner, "clipboard/set", text="from the browser")
    assert (await reply(owner, "clipboard/ack"))["ok"] is True
    assert phone.clipboard == "from the browser"
    assert (await refused(owner, "clipboard/set", text="x" * 1001))["code"] == "too-large"
    assert phone.clipboard == "from the browser"
    phone.copy("secret on the phone")
    await asyncio.sleep(0.3)
    assert not controls(owner, "guest/clipboard"), "phone-to-browser is forbidden"
    blocked = edge.node.audit.entries(phone="phone-1", action="clipboard/blocked")
    assert blocked and blocked[-1]["direction"] == "phone-to-browser"

    edge.node.policies.set_phone("phone-1", {"clipboard": "phone-to-browser"})
    phone.copy("shared text")
    assert (await reply(owner, "guest/clipboard"))["text"] == "shared text"
    assert (await refused(owner, "clipboard/set", text="nope"))["code"] == "clipboard-forbidden"
    assert phone.clipboard == "shared text"


async def dial_from_phone(owner: PhoneClient, phone: SimulatedPhone, number: str) -> None:
    """Open the dialer, type a number and tap Call, as a user of the cloud phone does."""
    owner.tap(*icon("Dialer"))
    await eventually(lambda: phone.ui is not None and phone.ui.current == "Dialer")
    owner.type_text(number)
    x0, y0, x1, y1 = LAYOUT.action_button()
    sent = len(phone.telephony_sent)
    owner.tap((x0 + x1) / 2 / 720, (y0 + y1) / 2 / 1280)
    await eventually(lambda: len(phone.telephony_sent) > sent)


async def test_dial_request_reaches_only_the_owner_and_the_answer_the_phone(edge: Edge) -> None:
    owner = await edge.viewer(codec="h264")
    phone = phone_of(edge)
    guest = await edge.viewer(codec="h264", token=await invite(owner), role="viewer")
    await dial_from_phone(owner, phone, "+44 20 7946 0958")
    request = await reply(owner, "telephony/request")
    assert request["kind"] == "dial" and request["number"] == "+442079460958"
    assert (await refused(guest, "telephony/answer", id=request["id"], outcome="confirmed"))[
        "code"
    ] == "forbidden"
    assert (await refused(owner, "telephony/answer", id=request["id"], outcome="maybe"))[
        "code"
    ] == "bad-message"
    send(owner, "telephony/answer", id=request["id"], outcome="confirmed")
    await eventually(lambda: phone.telephony_answers.get(request["id"]) == "confirmed")
    assert (await reply(owner, "telephony/result"))["result"] == "confirmed"
    assert phone.ui is not None and "confirmed" in phone.ui.dialer.status
    assert not controls(guest, "telephony/request") and not controls(guest, "telephony/result")

    # An invalid number never reaches the owner; a forbidding policy answers at once.
    phone.ui.dialer.number = ""
    await dial_from_phone(owner, phone, "12")
    last = phone.telephony_sent[-1].request_id
    await eventually(lambda: phone.telephony_answers.get(last) == "invalid")
    edge.node.policies.set_phone("phone-1", {"telephony": False})
    await dial_from_phone(owner, phone, "5")
    last = phone.telephony_sent[-1].request_id
    await eventually(lambda: phone.telephony_answers.get(last) == "forbidden")
    assert len(controls(owner, "telephony/request")) == 1
    edge.node.policies.set_phone("phone-1", {"telephony": True, "telephony_timeout_s": 0.5})
    await dial_from_phone(owner, phone, "5")
    last = phone.telephony_sent[-1].request_id
    await eventually(lambda: phone.telephony_answers.get(last) == "timed-out")


async def test_idle_timeout_and_allowed_networks(make_edge: EdgeFactory) -> None:
    edge = await make_edge(policy={"idle_timeout_s": 1.0})
    owner = await edge.viewer(codec="h264")
    await eventually(lambda: owner.closed_reason == "idle timeout", timeout=6)
    assert [e for e in edge.node.audit.entries(action="session/idle-timeout")]

    edge.node.policies.set_phone("phone-1", {"idle_timeout_s": 0, "allowed_cidrs": ["10.0.0.0/8"]})
    with pytest.raises(SignalingError) as exc:
        await edge.viewer(codec="h264")
    assert exc.value.code == "forbidden" and "127.0.0.1" in exc.value.message
    edge.node.policies.set_phone("phone-1", {"allowed_cidrs": ["127.0.0.0/8"]})
    await edge.viewer(codec="h264")


async def test_kick_preempt_and_maximum_session_length(edge: Edge) -> None:
    owner = await edge.viewer(codec="h264")
    guest = await edge.viewer(codec="h264", token=await invite(owner), role="viewer")
    assert (await refused(owner, "viewers/kick", session=owner.welcome["session"]))["code"] == (
        "bad-state"
    )
    send(owner, "viewers/kick", session=guest.welcome["session"])
    await eventually(lambda: guest.closed_reason == "kicked by developer")

    edge.node.policies.set_phone("phone-1", {"preempt": True})
    newer = await edge.viewer(codec="h264")
    await eventually(lambda: owner.closed_reason == "preempted by a newer session of the owner")
    await eventually(lambda: state(newer).get("inControl") is True)
    assert list(edge.node.sessions) == [newer.welcome["session"]]

    edge.node.policies.set_phone("phone-1", {"max_session_s": 1.0})
    await eventually(lambda: newer.closed_reason == "maximum session length reached", timeout=5)
    actions = {e["action"] for e in edge.node.audit.entries(phone="phone-1")}
    assert {"session/kick", "session/preempted", "session/max-length"} <= actions


async def test_per_viewer_watermark_is_one_encode_per_mark(edge: Edge) -> None:
    edge.node.policies.set_phone("phone-1", {"watermark": "viewer"})
    owner = await edge.viewer(codec="h264")
    guest = await edge.viewer(codec="h264", token=await invite(owner, label="guest-bob"),
                              role="viewer")  # fmt: skip
    pipeline = edge.node.pipelines["phone-1"]
    await eventually(lambda: pipeline.active_encoders == 2)
    streams = pipeline.stats()["streams"]
    assert set(streams) == {stream_key("h264", "developer"), stream_key("h264", "guest-bob")}
    assert not any("guest-bob" in key for key in streams), "no viewer names in stats keys"
    phone_of(edge).request_refresh()
    frame = await guest.wait_for_frame(lambda f: True)
    theirs = await owner.wait_for_frame(lambda f: True)
    diff = frame.luma.astype(np.int16) - theirs.luma.astype(np.int16)

    def mark_change(label: str, others: tuple[str, ...]) -> float:
        """Mean luma change where `label`'s mark is drawn and no other mark is (this minute's
        mark or the last one's, whichever matches: the minute may turn during the test)."""
        best = -255.0
        now = time.time()
        for at in (now, now - 60):
            mask = mark_mask(mark_text(label, at), 720, 1280) > 0.15
            for other in others:
                mask &= mark_mask(mark_text(other, at), 720, 1280) == 0
            best = max(best, float(np.abs(diff[mask]).mean()))
        return best

    assert mark_change("guest-bob", ("developer",)) > 15
    # Where only an unrelated label would be drawn, the two pictures agree.
    assert mark_change("mallory", ("developer", "guest-bob")) < 6


async def test_admin_api_reads_audit_and_sets_policy(make_edge: EdgeFactory) -> None:
    edge = await make_edge(admin_token="s3cret")
    async with edge.http.get(edge.url("/edge/admin/audit")) as response:
        assert response.status == 401
    headers = {"Authorization": "Bearer s3cret"}
    async with edge.http.put(edge.url("/edge/admin/policy/phones/phone-1"), headers=headers,
                             json={"clipboard": "sideways"}) as response:  # fmt: skip
        assert response.status == 400 and "clipboard" in (await response.text())
    async with edge.http.put(edge.url("/edge/admin/policy/phones/phone-1"), headers=headers,
                             json={"watermark": "shared", "watermark_text": "ACME"}) as response:  # fmt: skip
        assert response.status == 200 and (await response.json())["watermark"] == "shared"
    async with edge.http.post(edge.url("/edge/admin/phones/phone-1/invites"), headers=headers,
                              json={"kind": "view", "label": "auditor"}) as response:  # fmt: skip
        created = await response.json()
    viewer = await edge.viewer(codec="h264", token=created["token"], role="viewer")
    assert edge.node.sessions[viewer.welcome["session"]].track.mark == "ACME"
    async with edge.http.get(edge.url("/edge/admin/audit?phone=phone-1"), headers=headers) as r:
        entries = (await r.json())["entries"]
    joins = [e for e in entries if e["action"] == "session/join"]
    assert joins and joins[-1]["actor"] == "auditor" and joins[-1]["role"] == "viewer"
    assert joins[-1]["invite"] == created["invite"]["id"]


async def test_invites_work_with_the_control_plane_on(
    make_edge: EdgeFactory, tmp_path: Any
) -> None:
    edge = await make_edge(control_db=str(tmp_path / "control.db"), admin_token="adm-token")
    with pytest.raises(SignalingError):
        await edge.viewer(codec="h264", token="cpi_not-an-invite", role="viewer")
    owner = await edge.viewer(codec="h264", token="adm-token")
    guest = await edge.viewer(codec="h264", token=await invite(owner, kind="view"), role="viewer")
    assert guest.welcome["role"] == "viewer" and guest.welcome["canControl"] is False
    await guest.wait_for_frame(lambda f: True)
    headers = {"Authorization": "Bearer adm-token"}
    async with edge.http.get(edge.url("/edge/admin/audit?action=session"), headers=headers) as r:
        assert r.status == 200
        actors = [e["actor"] for e in (await r.json())["entries"]]
    assert "guest-bob" in actors
