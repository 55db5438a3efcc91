"""A Python viewer: the H5 page's protocol spoken by an aiortc peer.

Used by the tests, by benchmarks on machines without a browser, and by anyone embedding the
edge who wants to script a phone. It decodes every frame it receives; `read_stamp` on the luma
plane gives the latency probe without a colour conversion.

Note: aiortc's receiver holds each frame until the first packet of the *next* frame arrives
(it ignores the RTP marker bit), so latencies measured here include up to one frame interval
that a browser does not add (FIELD-NOTES).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel
from cloudphone.vm.stamp import Stamp, read_stamp


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    width: int
    height: int
    luma: np.ndarray  # H x W
    received_at: float  # time.monotonic()
    stamp: Stamp | None


class SignalingError(RuntimeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PhoneClient:
    """Connect with `await PhoneClient.connect(session, url, instance)`; `close()` at the end."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.welcome: dict[str, Any] = {}
        self.codec: str | None = None
        self.frames: asyncio.Queue[ReceivedFrame] = asyncio.Queue(maxsize=600)
        self.frames_received = 0
        self.channels: dict[str, RTCDataChannel] = {}
        self.channel_messages: dict[str, list[dict[str, Any]]] = {
            "input": [],
            "control": [],
            "stats": [],
        }
        self.signaling_messages: list[dict[str, Any]] = []
        self.closed_reason: str | None = None
        self._channels_open = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._seq = 0
        self.on_frame: Callable[[ReceivedFrame], None] | None = None

    @classmethod
    async def connect(
        cls,
        http: aiohttp.ClientSession,
        ws_url: str,
        instance: str,
        *,
        role: str = "owner",
        codec: str = "auto",
        token: str | None = None,
        timeout: float = 20.0,
    ) -> PhoneClient:
        client = cls()
        try:
            await asyncio.wait_for(
                client._connect(http, ws_url, instance, role, codec, token), timeout
            )
        except BaseException:
            await client.close()
            raise
        return client

    async def _connect(
        self,
        http: aiohttp.ClientSession,
        ws_url: str,
        instance: str,
        role: str,
        codec: str,
        token: str | None,
    ) -> None:
        self.ws = await http.ws_connect(ws_url)
        hello: dict[str, Any] = {
            "v": 1,
            "type": "hello",
            "instance": instance,
            "role": role,
            "codec": codec,
        }
        if token is not None:
            hello["token"] = token
        await self.ws.send_str(json.dumps(hello))
        self.welcome = await self._expect("welcome")
        offer = await self._expect("offer")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._tasks.append(asyncio.create_task(self._read_video(track)))

        @self.pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            self.channels[channel.label] = channel

            @channel.on("message")
            def on_message(raw: str | bytes) -> None:
                with contextlib.suppress(ValueError):
                    self.channel_messages.setdefault(channel.label, []).append(json.loads(raw))

            if {"input", "control", "stats"} <= set(self.channels):
                self._channels_open.set()

        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = self.pc.localDescription.sdp
        for line in answer.splitlines():
            if line.startswith("a=rtpmap:") and ("H264" in line or "VP8" in line):
                self.codec = "h264" if "H264" in line else "vp8"
                break
        await self.ws.send_str(json.dumps({"v": 1, "type": "answer", "sdp": answer}))
        self._tasks.append(asyncio.create_task(self._read_signaling()))
        await self._channels_open.wait()

    async def _expect(self, kind: str) -> dict[str, Any]:
        assert self.ws is not None
        while True:
            msg = await self.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise SignalingError(
                    "closed", f"websocket closed ({self.ws.close_code}) waiting for {kind}"
                )
            data = json.loads(msg.data)
            self.signaling_messages.append(data)
            if data.get("type") == "error":
                raise SignalingError(data.get("code", "?"), data.get("message", ""))
            if data.get("type") == kind:
                return data

    async def _read_signaling(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                self.signaling_messages.append(data)
                if data.get("type") == "bye":
                    self.closed_reason = data.get("reason", "")

    async def _read_video(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.VideoFrame)
            received = time.monotonic()
            plane = frame.planes[0]
            luma = np.frombuffer(memoryview(plane), np.uint8).reshape(
                frame.height, plane.line_size
            )[:, : frame.width]
            item = ReceivedFrame(frame.width, frame.height, luma.copy(), received, read_stamp(luma))
            self.frames_received += 1
            if self.on_frame is not None:
                self.on_frame(item)
            if self.frames.full():
                self.frames.get_nowait()
            self.frames.put_nowait(item)

    # -- input -------------------------------------------------------------------------------

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def send_input(self, message: dict[str, Any]) -> int:
        """Send one input message, adding a fresh `seq` unless given; returns the seq."""
        if "seq" not in message:
            message = {**message, "seq": self.next_seq()}
        self.channels["input"].send(json.dumps(message))
        return int(message["seq"])

    def send_control(self, message: dict[str, Any]) -> None:
        self.channels["control"].send(json.dumps(message))

    def want_stats(self, on: bool = True) -> None:
        """Ask the edge for its once-a-second `stats` messages (or to stop them)."""
        self.send_control({"type": "control/stats", "on": on})

    def touch(self, action: str, x: float, y: float, pointer: int = 0) -> int:
        return self.send_input({"type": "touch", "a": action, "id": pointer, "x": x, "y": y})

    def tap(self, x: float, y: float) -> int:
        self.touch("down", x, y)
        return self.touch("up", x, y)

    def type_text(self, text: str) -> int:
        return self.send_input({"type": "text", "s": text})

    def nav(self, key: str) -> int:
        return self.send_input({"type": "nav", "k": key})

    async def wait_for_frame(
        self, predicate: Callable[[ReceivedFrame], bool], timeout: float = 10.0
    ) -> ReceivedFrame:
        async def scan() -> ReceivedFrame:
            while True:
                frame = await self.frames.get()
                if predicate(frame):
                    return frame

        return await asyncio.wait_for(scan(), timeout)

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.send_str(json.dumps({"v": 1, "type": "bye"}))
            await self.ws.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.pc.close()
