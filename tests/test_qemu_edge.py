"""End to end: a real QEMU guest streamed through the edge to an in-process aiortc viewer.

Keys, text and a tap go in over the `input` data channel and show in the decoded frames
(matched by the latency stamp); a resolution change reaches the viewer on the same
connection; killing QEMU tells the viewer `guest-restarting`, then the stream resumes.
Uses the default capture path (VNC). One edge, one boot plus one restart (~30 s)."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from cloudphone.edge.client import PhoneClient, ReceivedFrame
from cloudphone.vm.guest import GuestState
from cloudphone.vm.qemu import QemuGuest

from tests.conftest import EdgeFactory, eventually
from tests.qemu_support import (
    differs,
    pid_alive,
    recipe_image,
    requires_qemu,
    stamped,
    until_frame,
)

pytestmark = [requires_qemu, pytest.mark.qemu]


def _controls(client: PhoneClient, kind: str) -> list[dict[str, Any]]:
    return [m for m in client.channel_messages["control"] if m.get("type") == kind]


async def _apply(client: PhoneClient, seq: int, timeout: float = 10.0) -> ReceivedFrame:
    return await client.wait_for_frame(stamped(seq), timeout)


async def test_qemu_guest_streams_through_the_edge(make_edge: EdgeFactory) -> None:
    recipe_image()  # build (or reuse) before the edge boots the guest
    edge = await make_edge(guest="qemu")
    guest = edge.pool.get("phone-1")
    assert isinstance(guest, QemuGuest) and guest.state == GuestState.RUNNING
    assert guest.config.capture == "vnc"  # the default capture path
    client = await edge.viewer(codec="h264")
    assert client.welcome["screen"] == {"width": 720, "height": 1280, "rotation": 0}
    # Debian 12's QEMU 7.2 has no multi-touch device: the page is told one pointer
    # (test_qemu_multitouch.py covers QEMU >= 8.1)
    assert guest.config.multitouch is False
    assert client.welcome["capabilities"]["multitouch"] is False
    assert client.welcome["capabilities"]["maxPointers"] == 1
    first = await client.wait_for_frame(lambda f: f.stamp is not None, 15.0)
    assert (first.width, first.height) == (720, 1280)

    # keys and text: the typed-text panel changes
    seq = client.send_input({"type": "key", "a": "press", "code": "KeyH", "shift": True})
    typed = await _apply(client, seq)
    seq = client.type_text("ello, qemu!")
    panel = (slice(60, 180), slice(0, 720))
    typed = await until_frame(
        client, seq, lambda f: differs(f.luma[panel], first.luma[panel]), "text"
    )

    # a tap: the guest draws a bright dot where it landed, on a dark background; a second
    # finger down at the same time is not the tracked one and draws nothing
    client.touch("down", 0.3, 0.8)
    client.touch("down", 0.7, 0.8, pointer=1)
    client.touch("up", 0.7, 0.8, pointer=1)
    seq = client.touch("up", 0.3, 0.8)
    await until_frame(
        client,
        seq,
        lambda f: (
            f.luma[int(0.8 * 1280), int(0.3 * 720)] > 80
            and f.luma[int(0.8 * 1280), int(0.7 * 720)] < 60
        ),
        "a dot where the tap landed",
    )

    # nav buttons reach the guest (home clears the text panel)
    seq = client.nav("home")
    await until_frame(client, seq, lambda f: differs(f.luma[panel], typed.luma[panel]), "home")

    # resolution change: landscape and back, same peer connection
    seq = client.send_input({"type": "key", "a": "press", "code": "F11"})
    wide = await client.wait_for_frame(lambda f: f.width == 1280 and stamped(seq)(f), 10.0)
    assert (wide.width, wide.height) == (1280, 720)
    await eventually(lambda: any(m.get("width") == 1280 for m in _controls(client, "guest/screen")))
    seq = client.send_input({"type": "key", "a": "press", "code": "F11"})
    tall = await client.wait_for_frame(lambda f: f.width == 720 and stamped(seq)(f), 10.0)
    assert (tall.width, tall.height) == (720, 1280)

    # crash: viewers hear guest-restarting, then the stream resumes on the same connection
    assert guest.process is not None and guest.process.pid is not None
    old_pid = guest.process.pid
    os.kill(old_pid, signal.SIGKILL)  # the QEMU this test's edge started
    await eventually(
        lambda: any(m.get("event") == "guest-restarting" for m in _controls(client, "guest/state")),
        5.0,
    )
    await eventually(lambda: guest.state == GuestState.RUNNING, 90.0)

    def states() -> list[str]:
        return [m["state"] for m in _controls(client, "guest/state")]

    # the "running" event travels the control channel after the state changed here
    await eventually(lambda: states()[-2:] == ["restarting", "running"], 5.0)
    assert not pid_alive(old_pid)  # reaped: no zombie
    assert guest.process is not None and guest.process.pid != old_pid
    # the restarted guest counts inputs from zero: the edge maps its seq anew
    seq = client.send_input({"type": "key", "a": "press", "code": "KeyR"})
    after = await _apply(client, seq, 15.0)
    assert (after.width, after.height) == (720, 1280)
