"""Signaling over a real WebSocket: bad input, vanishing peers, released phones, leaks."""

from __future__ import annotations

import asyncio
import gc
import json
import threading

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from cloudphone.edge import signaling_server
from cloudphone.signaling.protocol import CloseCode

from tests.conftest import Edge, EdgeFactory, eventually


async def _recv(ws: aiohttp.ClientWebSocketResponse) -> dict:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type == aiohttp.WSMsgType.TEXT, (
        f"expected a text frame, got {msg.type} ({ws.close_code})"
    )
    return json.loads(msg.data)


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type in (
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.CLOSING,
    )
    return ws.close_code


async def test_malformed_messages_get_errors_and_the_connection_survives(edge: Edge) -> None:
    ws = await edge.ws()
    await ws.send_str("{oops")
    assert (await _recv(ws))["code"] == "bad-json"
    await ws.send_str('{"type":"dance"}')
    assert (await _recv(ws))["code"] == "unknown-type"
    await ws.send_str('{"type":"hello","instance":"phone-1","colour":"red"}')
    error = await _recv(ws)
    assert error["code"] == "bad-message" and "colour" in error["message"]
    await ws.send_str('{"type":"answer","sdp":"v=0"}')
    assert (await _recv(ws))["code"] == "bad-state"
    await ws.send_bytes(b"\x00\x01")
    assert (await _recv(ws))["code"] == "bad-message"
    await ws.send_str('{"v":1,"type":"hello","instance":"phone-1"}')
    assert (await _recv(ws))["type"] == "welcome"
    assert (await _recv(ws))["type"] == "offer"
    await ws.close()


async def test_unknown_instance_is_refused_with_close_code(edge: Edge) -> None:
    ws = await edge.ws()
    await ws.send_str('{"type":"hello","instance":"phone-404"}')
    error = await _recv(ws)
    assert error["code"] == "unknown-instance" and error["fatal"] is True
    assert await _closed(ws) == 4404


async def test_oversize_frames_close_cleanly(edge: Edge) -> None:
    ws = await edge.ws()
    await ws.send_str(json.dumps({"type": "answer", "sdp": "v=0" + "x" * 100_000}))
    error = await _recv(ws)
    assert error["code"] == "too-large"
    assert await _closed(ws) == 1009
    ws = await edge.ws()
    await ws.send_str("x" * 2_000_000)  # beyond what the server reads at all
    assert await _closed(ws) == 1009
    # The edge still serves others.
    client = await edge.viewer(codec="h264")
    await client.wait_for_frame(lambda f: True)


async def test_silent_client_times_out(edge: Edge, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signaling_server, "HELLO_TIMEOUT_S", 0.3)
    ws = await edge.ws()
    assert (await _recv(ws))["code"] == "timeout"
    assert await _closed(ws) == 4408


async def test_peer_vanishing_mid_offer_releases_the_session(edge: Edge) -> None:
    ws = await edge.ws()
    await ws.send_str('{"type":"hello","instance":"phone-1"}')
    await _recv(ws)
    await _recv(ws)
    assert len(edge.node.sessions) == 1
    await ws.close()
    await eventually(lambda: not edge.node.sessions)


async def test_bad_input_is_refused_on_the_channel_and_others_keep_streaming(edge: Edge) -> None:
    bad = await edge.viewer(codec="h264")
    good = await edge.viewer(codec="h264")
    bad.channels["input"].send('{"type":"touch","a":"down","id":0,"x":7,"y":0.5}')
    bad.channels["input"].send("garbage")
    await eventually(lambda: len(bad.channel_messages["input"]) >= 2)
    codes = [m["code"] for m in bad.channel_messages["input"]]
    assert codes == ["out-of-range", "bad-json"]
    seq = good.touch("down", 0.5, 0.5)
    await good.wait_for_frame(lambda f: f.stamp is not None and f.stamp.input_seq >= seq)


async def test_server_stats_flow_only_while_the_page_asks_for_them(
    edge: Edge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cloudphone.edge.session.STATS_INTERVAL_S", 0.05)
    client = await edge.viewer(codec="h264")
    await client.wait_for_frame(lambda f: True)
    await asyncio.sleep(0.3)
    assert client.channel_messages["stats"] == []  # nobody asked
    client.want_stats()
    await eventually(lambda: len(client.channel_messages["stats"]) >= 2)
    stats = client.channel_messages["stats"][-1]
    assert stats["type"] == "stats" and stats["codec"] == "h264" and "streams" in stats
    client.want_stats(False)
    await asyncio.sleep(0.2)  # one already under way may still land
    count = len(client.channel_messages["stats"])
    await asyncio.sleep(0.3)
    assert len(client.channel_messages["stats"]) == count
    client.send_control({"type": "control/stats", "on": "yes"})
    await eventually(lambda: any(m["type"] == "error" for m in client.channel_messages["control"]))
    error = next(m for m in client.channel_messages["control"] if m["type"] == "error")
    assert error["code"] == "bad-message" and error["request"] == "control/stats"


async def test_viewer_role_cannot_send_input(edge: Edge) -> None:
    viewer = await edge.viewer(codec="h264", role="viewer")
    viewer.touch("down", 0.5, 0.5)
    await eventually(lambda: bool(viewer.channel_messages["input"]))
    assert viewer.channel_messages["input"][0]["code"] == "forbidden"


async def test_released_phone_disconnects_its_viewers_with_a_reason(make_edge: EdgeFactory) -> None:
    edge = await make_edge(phones=2)
    leaving = await edge.viewer("phone-1", codec="h264")
    staying = await edge.viewer("phone-2", codec="h264")
    await edge.pool.remove("phone-1", reason="phone released")
    await eventually(lambda: leaving.closed_reason is not None)
    assert leaving.closed_reason == "phone released"
    assert "phone-1" not in edge.node.pipelines
    seq = staying.touch("down", 0.5, 0.5)
    await staying.wait_for_frame(lambda f: f.stamp is not None and f.stamp.input_seq >= seq)


async def test_stopping_the_edge_says_going_away_to_open_pages(make_edge: EdgeFactory) -> None:
    edge = await make_edge()
    client = await edge.viewer(codec="h264")
    await client.wait_for_frame(lambda f: True)
    started = asyncio.get_running_loop().time()
    await edge.server.close()  # runs the app's shutdown and cleanup, as a stopping edge does
    took = asyncio.get_running_loop().time() - started
    assert client.ws is not None and client.ws.closed
    assert client.ws.close_code == CloseCode.GOING_AWAY
    assert took < 10, f"stopping waited {took:.1f} s for open sockets"
    assert not edge.node.sessions


def _encoder_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("encoder-"))


def _peer_connections() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection))


async def test_fifty_sessions_leave_nothing_behind(edge: Edge) -> None:
    # Warm up once so lazily created, long-lived objects exist before the baseline.
    client = await edge.viewer(codec="h264")
    await client.wait_for_frame(lambda f: True)
    await client.close()
    edge.clients.clear()
    del client
    await eventually(lambda: not edge.node.sessions and _encoder_threads() == 0)
    tasks_before = len(asyncio.all_tasks())
    pcs_before = _peer_connections()

    async def one(i: int) -> None:
        viewer = await edge.viewer(codec="h264" if i % 2 else "vp8")
        await viewer.wait_for_frame(lambda f: True)
        await viewer.close()

    for batch in range(10):
        await asyncio.gather(*(one(batch * 5 + i) for i in range(5)))
    edge.clients.clear()
    pipeline = edge.node.pipeline("phone-1")
    await eventually(lambda: not edge.node.sessions, timeout=20)
    await eventually(lambda: _encoder_threads() == 0, timeout=20)
    assert pipeline.viewers == 0 and pipeline.active_encoders == 0
    assert pipeline.encoders_created >= 2
    await eventually(lambda: len(asyncio.all_tasks()) <= tasks_before, timeout=20)
    await eventually(lambda: _peer_connections() <= pcs_before, timeout=20)
