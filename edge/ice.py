"""Where the edge's ICE candidates come from and what addresses it announces.

aioice gathers host candidates from every interface *except* loopback and offers no parameter
to change that, so the edge replaces its `get_host_addresses` with one that returns the
configured list: `127.0.0.1` for a loopback-only edge (tests, a browser on the same machine),
specific interfaces on a multi-homed node. Behind a 1:1 NAT, `announce` rewrites the host
candidates of our SDP to the public address (as Janus' `nat_1_1_mapping` or LiveKit's
`node_ip` do).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy
from cloudphone.signaling.ice_servers import IceServer

_ORIGINAL_GET_HOST_ADDRESSES = aioice.ice.get_host_addresses
_configured: tuple[str, ...] | None = None


def configure_host_addresses(addresses: Sequence[str] | None) -> None:
    """Gather host candidates on exactly `addresses`; "auto" in the list adds aioice's own
    interface scan. None restores aioice's default. Process-wide, as aioice's lookup is."""
    global _configured
    if addresses is None:
        _configured = None
        aioice.ice.get_host_addresses = _ORIGINAL_GET_HOST_ADDRESSES
        return
    for address in addresses:
        if address != "auto":
            ipaddress.ip_address(address)  # raises ValueError on a typo
    _configured = tuple(addresses)
    aioice.ice.get_host_addresses = _configured_host_addresses


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    out: list[str] = []
    for address in _configured or ():
        if address == "auto":
            out.extend(a for a in _ORIGINAL_GET_HOST_ADDRESSES(use_ipv4, use_ipv6) if a not in out)
            continue
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(address)
    return out


_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host.*)$", re.MULTILINE)


def announce(sdp: str, mapping: Mapping[str, str]) -> str:
    """Rewrite host candidate addresses in `sdp` through `mapping` (local -> announced)."""
    if not mapping:
        return sdp

    def replace(match: re.Match[str]) -> str:
        return match.group(1) + mapping.get(match.group(2), match.group(2)) + match.group(3)

    return _CANDIDATE.sub(replace, sdp)


def rtc_configuration(servers: Sequence[IceServer], relay_only: bool = False) -> RTCConfiguration:
    """An explicit configuration: an empty list means no STUN/TURN at all, never a default.
    `relay_only`: gather relayed candidates only, so media goes through TURN."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in servers
        ],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
    )
