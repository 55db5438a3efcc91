"""End to end with real aiortc peers over loopback: frames, input, fan-out."""

from __future__ import annotations

import asyncio

import pytest
from cloudphone.vm.simulated.ui import Layout

from tests.conftest import Edge, drag_until, eventually


@pytest.mark.parametrize("codec", ["h264", "vp8"])
async def test_viewer_receives_phone_sized_frames(edge: Edge, codec: str) -> None:
    client = await edge.viewer(codec=codec)
    assert client.codec == codec
    assert client.welcome["screen"] == {"width": 720, "height": 1280, "rotation": 0}
    # The phone renders on change: drag a finger so that it has something to show.
    client.touch("down", 0.1, 0.5)
    await drag_until(client, lambda: client.frames_received >= 30)
    assert client.frames_received >= 30
    frame = await client.frames.get()
    assert (frame.width, frame.height) == (720, 1280)


@pytest.mark.parametrize("codec", ["h264", "vp8"])
async def test_touch_reaches_phone_and_shows_in_stamp(edge: Edge, codec: str) -> None:
    client = await edge.viewer(codec=codec)
    await client.wait_for_frame(lambda f: f.stamp is not None)
    seq = client.touch("down", 0.5, 0.5)
    frame = await client.wait_for_frame(lambda f: f.stamp is not None and f.stamp.input_seq >= seq)
    assert frame.stamp is not None and frame.stamp.input_seq == seq


async def test_typed_text_changes_the_notes_app(edge: Edge) -> None:
    client = await edge.viewer(codec="h264")
    layout = Layout(720, 1280)
    _, x0, y0, x1, y1 = next(r for r in layout.icon_rects() if r[0] == "Notes")
    seq = client.tap((x0 + x1) / 2 / 720, (y0 + y1) / 2 / 1280)
    opened = await client.wait_for_frame(lambda f: f.stamp is not None and f.stamp.input_seq >= seq)
    # The notes page is light paper: its mean luma in the content area is high.
    assert opened.luma[300:900].mean() > 180
    before = opened.luma[150:400, 20:700].astype(int)
    seq = client.type_text("hello cloud phone")
    typed = await client.wait_for_frame(lambda f: f.stamp is not None and f.stamp.input_seq >= seq)
    after = typed.luma[150:400, 20:700].astype(int)
    assert abs(after - before).mean() > 1.0  # dark glyphs appeared on the paper


async def test_two_viewers_share_one_encoder(edge: Edge) -> None:
    first = await edge.viewer(codec="h264")
    second = await edge.viewer(codec="h264")
    pipeline = edge.node.pipeline("phone-1")
    await eventually(lambda: first.frames_received >= 5 and second.frames_received >= 5)
    assert pipeline.active_encoders == 1
    assert pipeline.encoders_created == 1
    assert pipeline.viewers == 2


@pytest.mark.parametrize("codec", ["h264", "vp8"])
async def test_viewers_of_a_stream_share_one_packetisation(edge: Edge, codec: str) -> None:
    """Each picture is split into RTP payloads once, however many viewers send it."""
    owner = await edge.viewer(codec=codec)
    watchers = [await edge.viewer(codec=codec, role="viewer") for _ in range(2)]
    clients = [owner, *watchers]
    await eventually(lambda: all(c.frames_received >= 1 for c in clients))
    pipeline = edge.node.pipeline("phone-1")

    def snapshot() -> tuple[int, int, list[int]]:
        stream = pipeline.stats()["streams"][codec]  # type: ignore[index]
        return (
            stream["picturesPacketized"],
            stream["packetsOut"],
            [c.frames_received for c in clients],
        )

    packetized0, published0, received0 = snapshot()
    owner.touch("down", 0.1, 0.5)
    await drag_until(
        owner,
        lambda: all(c.frames_received - r >= 20 for c, r in zip(clients, received0, strict=True)),
        moves=400,
    )
    await asyncio.sleep(0.3)
    packetized1, published1, received1 = snapshot()
    received = [b - a for a, b in zip(received0, received1, strict=True)]
    packetized = packetized1 - packetized0
    assert all(r >= 20 for r in received), received
    assert packetized <= published1 - published0 + 1
    assert sum(received) > 2 * packetized, (received, packetized)


async def test_metrics_and_health_describe_the_live_edge(edge: Edge) -> None:
    client = await edge.viewer(codec="vp8")
    await client.wait_for_frame(lambda f: True)
    text = await (await edge.http.get(edge.url("/metrics"))).text()
    assert "cloudphone_sessions 1.0" in text
    assert 'cloudphone_encoders{phone="phone-1"} 1.0' in text
    assert 'cloudphone_frames_encoded_total{codec="vp8",phone="phone-1"}' in text
    health = await (await edge.http.get(edge.url("/healthz"))).json()
    assert health["ok"] and health["sessions"] == 1
    assert health["pipelines"]["phone-1"]["streams"]["vp8"]["viewers"] == 1
