"""Multi-touch end to end: QEMU 10 (bookworm-backports, `virtio-multitouch-pci`) streamed
through the edge to an in-process aiortc viewer. The welcome says multi-touch with 10 pointers;
a two-finger drag sent over the `input` data channel draws two strokes, both visible in the
decoded frames. One boot (~15-25 s under TCG). The single-touch side (Debian 12's QEMU 7.2)
is checked in test_qemu_edge.py."""

from __future__ import annotations

import pytest
from cloudphone.edge.client import PhoneClient, ReceivedFrame
from cloudphone.vm.guest import GuestState
from cloudphone.vm.qemu import QemuGuest

from tests.conftest import EdgeFactory
from tests.qemu_support import BACKPORTS_QEMU, recipe_image, requires_multitouch_qemu

pytestmark = [requires_multitouch_qemu, pytest.mark.qemu]

LEFT, RIGHT, TOP, BOTTOM = 0.25, 0.75, 0.55, 0.85


def _bright(f: ReceivedFrame, x: float, y: float) -> bool:
    return bool(f.luma[int(y * f.height), int(x * f.width)] > 80)


def _two_strokes(f: ReceivedFrame) -> bool:
    """Both fingers' paths are drawn from top to bottom; the gap between them is not."""
    ys = [TOP + (BOTTOM - TOP) * i / 6 for i in range(7)]
    return (
        all(_bright(f, LEFT, y) and _bright(f, RIGHT, y) for y in ys)
        and not any(_bright(f, 0.5, y) for y in ys)
        and not _bright(f, LEFT, BOTTOM + 0.06)
    )


async def test_two_finger_drag_draws_two_strokes(make_edge: EdgeFactory) -> None:
    recipe_image()  # build (or reuse) before the edge boots the guest
    edge = await make_edge(guest="qemu", qemu_binary=str(BACKPORTS_QEMU))
    guest = edge.pool.get("phone-1")
    assert isinstance(guest, QemuGuest) and guest.state == GuestState.RUNNING
    assert guest.config.multitouch is True  # probed from the binary
    client: PhoneClient = await edge.viewer(codec="h264")
    capabilities = client.welcome["capabilities"]
    assert capabilities["multitouch"] is True and capabilities["maxPointers"] == 10
    first = await client.wait_for_frame(lambda f: f.stamp is not None, 15.0)
    assert not _bright(first, LEFT, TOP) and not _bright(first, RIGHT, TOP)

    client.touch("down", LEFT, TOP, pointer=0)
    client.touch("down", RIGHT, TOP, pointer=1)
    steps = 10
    for i in range(1, steps + 1):  # both fingers move together, as in a two-finger swipe
        y = TOP + (BOTTOM - TOP) * i / steps
        client.touch("move", LEFT, y, pointer=0)
        client.touch("move", RIGHT, y, pointer=1)
    client.touch("up", LEFT, BOTTOM, pointer=0)
    seq = client.touch("up", RIGHT, BOTTOM, pointer=1)
    try:
        await client.wait_for_frame(
            lambda f: f.stamp is not None and f.stamp.input_seq >= seq and _two_strokes(f), 10.0
        )
    except TimeoutError:
        raise AssertionError("no decoded frame showed both fingers' strokes") from None
