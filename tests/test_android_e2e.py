"""Android end to end: fake adb + fake scrcpy-server -> real edge pipeline -> real aiortc viewer.

Nothing on the edge encodes: the phone's H.264 is fanned out as-is (`encoders_created == 0`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest
from cloudphone.edge.client import PhoneClient
from cloudphone.vm.android.guest import AndroidGuest
from cloudphone.vm.guest import GuestState
from cloudphone.vm.pool import GuestSpec

from tests.conftest import Edge, EdgeFactory, eventually
from tests.fakes.adb_server import FakeAdbServer
from tests.fakes.scrcpy_device import FakeScrcpyDevice, add_phone


@dataclass
class AndroidEdge:
    edge: Edge
    adb: FakeAdbServer
    tmp: Path

    async def phone(
        self, guest_id: str, guest_options: dict[str, Any] | None = None, **kw: Any
    ) -> FakeScrcpyDevice:
        phone, options = add_phone(self.adb, self.tmp, f"serial-{guest_id}", **kw)
        options.update(guest_options or {})
        await self.edge.pool.create(guest_id, GuestSpec("android", options=options))
        return phone


@pytest.fixture
async def android(make_edge: EdgeFactory, tmp_path: Path) -> AsyncIterator[AndroidEdge]:
    adb = await FakeAdbServer().start()
    edge = await make_edge(phones=0, stamp=False)
    yield AndroidEdge(edge, adb, tmp_path)
    for client in edge.clients:
        await client.close()
    edge.clients.clear()
    await edge.pool.close()
    await adb.close()


def controls(client: PhoneClient, kind: str) -> list[dict[str, Any]]:
    return [m for m in client.channel_messages.get("control", []) if m.get("type") == kind]


async def test_passthrough_rotation_and_input(android: AndroidEdge) -> None:
    phone = await android.phone("droid-1")
    client = await android.edge.viewer("droid-1", codec="h264")
    pipeline = android.edge.node.pipeline("droid-1")
    assert client.codec == "h264"
    assert client.welcome["screen"] == {"width": 320, "height": 640, "rotation": 0}
    await eventually(lambda: client.frames_received >= 10)
    frame = await client.frames.get()
    assert (frame.width, frame.height) == (320, 640)
    # Zero edge encodes: the phone's access units went straight to RTP.
    assert pipeline.encoders_created == 0 and pipeline.active_encoders == 0
    assert pipeline.stats()["passthrough"] == "h264"
    assert phone.received.resets >= 1  # the new viewer asked the phone for a keyframe

    # Rotation: the displayed size changes, same peer connection, no reconnect.
    pc = client.pc
    phone.rotate()
    rotated = await client.wait_for_frame(lambda f: f.width == 640)
    assert (rotated.width, rotated.height) == (640, 320)
    assert client.pc is pc and pc.connectionState == "connected"
    await eventually(lambda: any(m.get("width") == 640 for m in controls(client, "guest/screen")))
    assert controls(client, "guest/screen")[-1] == {
        "type": "guest/screen", "width": 640, "height": 320, "rotation": 90,
    }  # fmt: skip

    # Two fingers after the rotation: two pointer ids, device pixels of the 640x320 picture.
    client.touch("down", 0.25, 0.5, pointer=0)
    client.touch("down", 0.75, 0.25, pointer=1)
    client.touch("move", 0.5, 0.5, pointer=0)
    client.touch("up", 0.75, 0.25, pointer=1)
    client.touch("up", 0.5, 0.5, pointer=0)
    await phone.wait_for(lambda: len(phone.received.touches) >= 5)
    assert [
        (t.action, t.pointer_id, t.x, t.y, t.width, t.height) for t in phone.received.touches
    ] == [
        (0, 0, 160, 160, 640, 320),
        (0, 1, 480, 80, 640, 320),
        (2, 0, 320, 160, 640, 320),
        (1, 1, 480, 80, 640, 320),
        (1, 0, 320, 160, 640, 320),
    ]
    assert not phone.received.dropped_touches

    # Text, keys, navigation, clipboard both ways.
    client.type_text("hello from the edge")
    client.send_input({"type": "key", "a": "press", "code": "KeyB"})
    client.nav("back")
    await phone.wait_for(lambda: phone.received.texts and len(phone.received.keys) >= 4)
    assert phone.received.texts == ["hello from the edge"]
    assert phone.received.keys == [(0, 30, 0), (1, 30, 0), (0, 4, 0), (1, 4, 0)]
    client.channels["control"].send(
        json.dumps({"type": "control/clipboard", "text": "copied in browser"})
    )
    await eventually(lambda: bool(controls(client, "control/clipboard-ack")))
    assert controls(client, "control/clipboard-ack")[0]["ok"] is True
    assert phone.clipboard == "copied in browser"
    await phone.set_device_clipboard("copied on the phone")
    await eventually(lambda: bool(controls(client, "guest/clipboard")))
    assert controls(client, "guest/clipboard")[0]["text"] == "copied on the phone"
    assert pipeline.encoders_created == 0


async def test_viewers_joining_together_all_get_a_keyframe(android: AndroidEdge) -> None:
    await android.phone("droid-many")
    first = await android.edge.viewer("droid-many", codec="h264")
    second, third = await asyncio.gather(
        android.edge.viewer("droid-many", codec="h264"),
        android.edge.viewer("droid-many", codec="h264"),
    )
    await eventually(lambda: min(c.frames_received for c in (first, second, third)) >= 5, timeout=8)
    pipeline = android.edge.node.pipeline("droid-many")
    assert pipeline.viewers == 3 and pipeline.encoders_created == 0


async def test_pli_from_the_viewer_sends_reset_video(android: AndroidEdge) -> None:
    phone = await android.phone("droid-pli")
    client = await android.edge.viewer("droid-pli", codec="h264")
    await eventually(lambda: client.frames_received >= 5)
    await asyncio.sleep(0.5)  # past the pipeline's and the guest's keyframe rate limits
    before = phone.received.resets
    receiver = client.pc.getReceivers()[0]
    ssrc = receiver.getSynchronizationSources()[0].source
    await receiver._send_rtcp_pli(ssrc)  # a real RTCP PLI on the wire, as a decoder would send
    await phone.wait_for(lambda: phone.received.resets > before)
    assert phone.received.resets == before + 1
    frames = client.frames_received
    await eventually(lambda: client.frames_received > frames + 3)


async def test_phone_dying_tells_viewers_and_comes_back(android: AndroidEdge) -> None:
    phone = await android.phone("droid-die")
    client = await android.edge.viewer("droid-die", codec="h264")
    await eventually(lambda: client.frames_received >= 5)
    phone.die()
    await eventually(
        lambda: any(m.get("event") == "guest-restarting" for m in controls(client, "guest/state"))
    )
    guest = android.edge.pool.get("droid-die")
    await eventually(lambda: guest.state == GuestState.RUNNING and phone.starts == 2)
    frames = client.frames_received
    await eventually(lambda: client.frames_received >= frames + 10)  # same viewer, no reconnect
    assert controls(client, "guest/state")[-1]["state"] == "running"
    assert android.edge.node.pipeline("droid-die").encoders_created == 0


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x00\x00\x00\x00", (1 << 62).to_bytes(8, "big") + (0x7FFFFFF0).to_bytes(4, "big")],
    ids=["truncated-header", "absurd-size"],
)
async def test_bad_device_closes_only_that_phone(android: AndroidEdge, garbage: bytes) -> None:
    bad = await android.phone("droid-bad")
    await android.phone("droid-good")
    bad_viewer = await android.edge.viewer("droid-bad", codec="h264")
    good_viewer = await android.edge.viewer("droid-good", codec="h264")
    await eventually(lambda: bad_viewer.frames_received >= 3 and good_viewer.frames_received >= 3)
    bad.break_video = garbage
    await eventually(
        lambda: any(m.get("state") == "failed" for m in controls(bad_viewer, "guest/state"))
    )
    assert android.edge.pool.get("droid-bad").state == GuestState.FAILED
    frames = good_viewer.frames_received
    await eventually(lambda: good_viewer.frames_received >= frames + 10)
    assert android.edge.pool.get("droid-good").state == GuestState.RUNNING
    assert bad.starts == 1


async def test_unknown_codec_fails_creation_and_spares_the_others(android: AndroidEdge) -> None:
    await android.phone("droid-ok")
    with pytest.raises(Exception, match="unknown video codec id"):
        await android.phone("droid-odd", codec_id=0x0BADC0DE)
    assert "droid-odd" not in android.edge.pool
    viewer = await android.edge.viewer("droid-ok", codec="h264")
    await eventually(lambda: viewer.frames_received >= 5)


async def test_vp8_viewer_is_transcoded_visibly(android: AndroidEdge) -> None:
    phone = await android.phone("droid-vp8")
    h264 = await android.edge.viewer("droid-vp8", codec="h264")
    vp8 = await android.edge.viewer("droid-vp8", codec="vp8")
    assert vp8.codec == "vp8"
    pipeline = android.edge.node.pipeline("droid-vp8")
    await eventually(lambda: vp8.frames_received >= 5 and h264.frames_received >= 5)
    frame = await vp8.frames.get()
    assert (frame.width, frame.height) == (320, 640)
    streams = pipeline.stats()["streams"]
    assert isinstance(streams, dict)
    assert streams["vp8"]["transcoding"] is True  # the slow path says so
    assert streams["h264"]["transcoding"] is False  # the H.264 viewer still gets the phone's own
    assert pipeline.encoders_created == 1 and pipeline.active_encoders == 1

    phone.rotate()  # the transcoding encoder follows the new size
    turned = await vp8.wait_for_frame(lambda f: f.width == 640)
    assert (turned.width, turned.height) == (640, 320)

    await vp8.close()
    android.edge.clients.remove(vp8)
    await eventually(lambda: pipeline.active_encoders == 0)
    n = h264.frames_received
    await eventually(lambda: h264.frames_received >= n + 5)


async def test_discovery_attaches_configured_devices_as_they_appear(tmp_path: Path) -> None:
    from cloudphone.vm.android import register
    from cloudphone.vm.android.discovery import AndroidDiscovery, guest_id_for
    from cloudphone.vm.pool import InstancePool

    adb = await FakeAdbServer().start()
    pool = InstancePool()
    register(pool)
    template = {k: v for k, v in add_phone(adb, tmp_path, "rack-01")[1].items() if k != "serial"}
    discovery = AndroidDiscovery(pool, template, serials={"rack-01", "rack-02"})
    try:
        discovery.start()
        await eventually(lambda: guest_id_for("rack-01") in pool)
        add_phone(adb, tmp_path, "unlisted")  # not configured: left alone
        add_phone(adb, tmp_path, "rack-02")  # plugged in later
        await eventually(lambda: guest_id_for("rack-02") in pool)
        await eventually(lambda: all(g.state == GuestState.RUNNING for g in pool))
        assert sorted(g.guest_id for g in pool) == ["android-rack-01", "android-rack-02"]
        assert guest_id_for("192.168.1.7:5555") == "android-192.168.1.7-5555"
    finally:
        await discovery.close()
        await pool.close()
        await adb.close()


async def test_android_instance_from_the_edge_config(
    make_edge: EdgeFactory, tmp_path: Path
) -> None:
    adb = await FakeAdbServer().start()
    try:
        _, options = add_phone(adb, tmp_path, "cfg-serial")
        # What a `[[instances]]` table in the TOML config becomes; the edge adds `stamp`.
        edge = await make_edge(
            phones=0, stamp=True, instances=[{"id": "cfg-phone", "kind": "android", **options}]
        )
        viewer = await edge.viewer("cfg-phone", codec="h264")
        await eventually(lambda: viewer.frames_received >= 5)
        assert edge.pool.get("cfg-phone").kind == "android"
        assert edge.node.pipeline("cfg-phone").encoders_created == 0
        await viewer.close()
        edge.clients.remove(viewer)
        await edge.pool.close()
    finally:
        await adb.close()


async def test_opus_audio_passes_through(android: AndroidEdge) -> None:
    phone = await android.phone("droid-audio", {"audio": True})
    old = await android.phone("droid-android10", {"audio": True}, android_sdk=29)
    viewer = await android.edge.viewer("droid-audio", codec="h264")
    audio = [r.track for r in viewer.pc.getReceivers() if r.track.kind == "audio"]
    assert len(audio) == 1
    frames = [await asyncio.wait_for(audio[0].recv(), 5) for _ in range(10)]
    # Decoded by the viewer, never by the edge.
    assert all(isinstance(f, av.AudioFrame) and f.sample_rate == 48000 for f in frames)
    assert phone.audio_packets_sent >= 10
    guest = android.edge.pool.get("droid-audio")
    assert isinstance(guest, AndroidGuest) and guest.audio_codec == "opus"
    await eventually(lambda: viewer.frames_received >= 5)
    assert android.edge.node.pipeline("droid-audio").encoders_created == 0

    # Android 10: the device disables audio (codec id 0); video goes on, no audio track offered.
    quiet = await android.edge.viewer("droid-android10", codec="h264")
    assert [r for r in quiet.pc.getReceivers() if r.track.kind == "audio"] == []
    quiet_guest = android.edge.pool.get("droid-android10")
    assert isinstance(quiet_guest, AndroidGuest) and quiet_guest.audio_codec is None
    await eventually(lambda: quiet.frames_received >= 5)
    assert old.audio_packets_sent == 0


async def test_clipboard_is_for_the_owner_only(android: AndroidEdge) -> None:
    phone = await android.phone("droid-clip")
    owner = await android.edge.viewer("droid-clip", codec="h264")
    watcher = await android.edge.viewer("droid-clip", codec="h264", role="viewer")
    watcher.channels["control"].send(json.dumps({"type": "control/clipboard", "text": "sneaky"}))
    await eventually(lambda: bool(controls(watcher, "control/clipboard-ack")))
    assert controls(watcher, "control/clipboard-ack")[0]["ok"] is False
    assert phone.received.clipboard_sets == []
    await phone.set_device_clipboard("owner's secret")
    await eventually(lambda: bool(controls(owner, "guest/clipboard")))
    await asyncio.sleep(0.2)
    assert controls(watcher, "guest/clipboard") == []
