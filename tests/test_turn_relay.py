"""Media through a real TURN relay (Debian's coturn on 127.0.0.1): an edge set to
`ice_relay_only` offers only relayed candidates, so every RTP packet it sends goes through its
TURN allocation, and every RTCP packet it reads comes back out of it. The one-pass send and the
RTCP arrival path must work there as on a host pair."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudphone.edge import rtcp_arrival

from tests.conftest import EdgeFactory, drag_until, eventually

TURNSERVER = shutil.which("turnserver")
SECRET = "turn-test-secret"

pytestmark = pytest.mark.skipif(
    TURNSERVER is None, reason="!! coturn not installed (scripts/install-system-deps.sh)"
)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_stun(port: int) -> bool:
    """A STUN Binding request to 127.0.0.1:`port` gets a response (the server is up)."""
    request = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, os.urandom(12))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(request, ("127.0.0.1", port))
        try:
            return s.recv(2048)[8:20] == request[8:20]
        except OSError:
            return False


@pytest.fixture
def turn_port(tmp_path: Path) -> Iterator[int]:
    """coturn on 127.0.0.1 with TURN REST auth, relaying between loopback peers."""
    port = _free_udp_port()
    relay_low = _free_udp_port()
    assert TURNSERVER is not None
    log = (tmp_path / "turnserver.log").open("w")
    server = subprocess.Popen(
        [TURNSERVER, "-n", "--no-cli", "--no-tls", "--no-dtls", "--log-file=stdout",
         f"--pidfile={tmp_path / 'turnserver.pid'}", f"--userdb={tmp_path / 'turndb'}",
         "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         f"--min-port={relay_low}", f"--max-port={relay_low + 40}",
         "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=cloudphone.test",
         "--allow-loopback-peers", "--fingerprint"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _answers_stun(port):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"turnserver did not start: {(tmp_path / 'turnserver.log').read_text()}"
                )
        yield port
    finally:
        server.terminate()
        server.wait(10)
        log.close()


async def test_a_relay_only_edge_streams_and_reads_feedback_through_coturn(
    turn_port: int,
    make_edge: EdgeFactory,  # in this order: the relay outlives the edge
) -> None:
    edge = await make_edge(
        turn_urls=[f"turn:127.0.0.1:{turn_port}"], turn_secret=SECRET, ice_relay_only=True
    )
    read = rtcp_arrival.COUNTERS.read
    client = await edge.viewer(codec="h264")
    client.touch("down", 0.1, 0.5)
    await drag_until(client, lambda: client.frames_received >= 15)
    assert client.frames_received >= 15
    session = edge.only_session()
    dtls = session.peer_connection.getSenders()[0].transport
    pair = dtls.transport._connection._nominated[1]
    assert pair.local_candidate.type == "relay"  # the edge's side is its TURN allocation
    assert type(pair.protocol.transport).__name__ == "TurnTransport"
    assert session.track.pictures_sent_directly >= 10  # one pass, through the allocation
    # the viewer's receiver reports and REMB come back out of the allocation and are read on
    # arrival, by the relayed candidate's protocol
    await eventually(lambda: rtcp_arrival.COUNTERS.read > read, timeout=15)
