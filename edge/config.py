"""Edge configuration: defaults <- TOML file <- `CLOUDPHONE_*` environment <- command line.

One flat dataclass: every option has one name, used in all three places (`fps` is `fps =` in
the file, `CLOUDPHONE_FPS` in the environment and `--fps` on the command line).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudphone.signaling.ice_servers import IceConfig, IceServer, TurnRestConfig, parse_ice_urls

ENV_PREFIX = "CLOUDPHONE_"
_RAW = ("instances", "policy")  # tables taken as they are (checked where they are used)


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names it."""


@dataclass
class EdgeConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    phones: int = 1
    size: str = "720x1280"
    fps: int = 30
    codec: str = "auto"  # auto | h264 | vp8: what the edge offers
    guest: str = "simulated"
    # QEMU for `kind = "qemu"` phones without their own `binary`: empty = qemu-system-<arch> on
    # PATH; e.g. .cache/qemu-backports/usr/bin/qemu-system-x86_64 (QEMU 10: multi-touch)
    qemu_binary: str = ""
    stamp: bool = False  # draw the latency probe into simulated phones' frames
    bitrate: int = 2_500_000
    min_bitrate: int = 300_000
    max_bitrate: int = 8_000_000
    keyframe_interval: float = 10.0
    # STUN/TURN URLs given to browsers and to our own peer connections; empty means none at all.
    ice_servers: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    turn_secret: str = ""
    turn_ttl: int = 3600
    # Addresses the edge gathers ICE host candidates on. Empty: derived from `host`.
    ice_host_addresses: list[str] = field(default_factory=list)
    # "local=public" pairs for a 1:1 NAT.
    ice_announce: list[str] = field(default_factory=list)
    # Media only through the TURN servers above (the edge offers relayed candidates only): for
    # a data centre whose hosts must not be reachable from browsers.
    ice_relay_only: bool = False
    low_latency: bool = True  # send the RTP playout-delay extension (min 0, max below)
    # Measured in headless Chromium, t2p p50/p95: max 0 -> 46/54 ms, 40 -> 40/48, 100 -> 30/48,
    # 500 -> 30/73, no extension -> 34-36/69-80 (benchmarks/RESULTS.md, 2026-11-28 15:5x).
    playout_delay_max_ms: int = 100
    dev_mode: bool = True  # /phone/<id> opens without a login (until the control plane is on)
    admin_token: str = ""
    control_db: str = ""  # SQLite file of the control plane (/api/v1); empty: no control plane
    demo: bool = False  # with control_db: seed an admin and a user with two phones (make run)
    control_config: str = ""  # TOML: regions, zones this node serves, flavors, prices, rules
    log_level: str = "info"
    instances: list[dict[str, Any]] = field(
        default_factory=list
    )  # per-instance overrides (file only)
    # Security policy of the default organisation (`edge/policy.py` fields; file only).
    policy: dict[str, Any] = field(default_factory=dict)
    audit_log: str = ""  # JSON-lines file the audit log is also written to; empty: memory only

    @property
    def width(self) -> int:
        return self._size()[0]

    @property
    def height(self) -> int:
        return self._size()[1]

    def _size(self) -> tuple[int, int]:
        try:
            w, h = (int(v) for v in self.size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"size must look like 720x1280, not {self.size!r}") from None
        if not (16 <= w <= 4096 and 16 <= h <= 4096) or w % 2 or h % 2:
            raise ConfigError(f"size {self.size} out of range (even, 16..4096)")
        return w, h

    def host_addresses(self) -> list[str]:
        """ICE host addresses: explicit list, else the bind address (loopback stays loopback,
        a wildcard bind gathers every interface plus loopback)."""
        if self.ice_host_addresses:
            return list(self.ice_host_addresses)
        if self.host in ("0.0.0.0", "::", ""):
            return ["auto", "127.0.0.1"]
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return ["127.0.0.1"] if self.host == "localhost" else ["auto"]
        return [self.host]

    def playout_delay(self) -> tuple[int, int] | None:
        """The (min, max) ms hint every session sends, or None when low latency is off."""
        return (0, self.playout_delay_max_ms) if self.low_latency else None

    def announced(self) -> dict[str, str]:
        out = {}
        for pair in self.ice_announce:
            local, sep, public = pair.partition("=")
            if not sep:
                raise ConfigError(f"ice_announce entries are local=public, not {pair!r}")
            out[local] = public
        return out

    def ice(self) -> IceConfig:
        turn = None
        if self.turn_urls:
            if not self.turn_secret:
                raise ConfigError("turn_urls needs turn_secret (coturn static-auth-secret)")
            turn = TurnRestConfig(tuple(self.turn_urls), self.turn_secret, self.turn_ttl)
        try:
            servers: tuple[IceServer, ...] = parse_ice_urls(self.ice_servers)
        except ValueError as exc:
            raise ConfigError(f"ice_servers: {exc}") from None
        return IceConfig(servers, turn)

    def validate(self) -> EdgeConfig:
        self._size()
        if self.codec not in ("auto", "h264", "vp8"):
            raise ConfigError("codec must be auto, h264 or vp8")
        if not 1 <= self.fps <= 120:
            raise ConfigError("fps must be 1..120")
        if not 0 <= self.phones <= 256:
            raise ConfigError("phones must be 0..256")
        if not 0 < self.min_bitrate <= self.bitrate <= self.max_bitrate:
            raise ConfigError("need 0 < min_bitrate <= bitrate <= max_bitrate")
        self.announced()
        ice = self.ice()
        if self.ice_relay_only and not (ice.turn_rest or any(s.is_turn for s in ice.servers)):
            raise ConfigError("ice_relay_only needs a TURN server (turn_urls or turn: ice_servers)")
        return self


def _coerce(name: str, value: Any, kind: Any) -> Any:
    text = isinstance(value, str)
    try:
        if kind is bool:
            if text:
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        if kind is str:
            return str(value)
        if str(kind).startswith("list"):
            if text:
                return [v.strip() for v in value.split(",") if v.strip()]
            return list(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name}: cannot read {value!r} as {getattr(kind, '__name__', kind)}"
        ) from None
    return value


def load_config(
    file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> EdgeConfig:
    """Build the configuration from the three sources, later ones winning."""
    fields = {f.name: f for f in dataclasses.fields(EdgeConfig)}
    types = {name: _field_type(f) for name, f in fields.items()}
    values: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(Path(file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {file}: {exc}") from None
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise ConfigError(f"config file {file}: unknown option {key!r}")
            values[name] = value if name in _RAW else _coerce(name, value, types[name])
    env = os.environ if environ is None else environ
    for key, value in env.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if name in fields and name not in _RAW:
                values[name] = _coerce(key, value, types[name])
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value, types[name]) if name not in _RAW else value
    return EdgeConfig(**values).validate()


def _field_type(f: dataclasses.Field[Any]) -> Any:
    annotation = str(f.type)
    return {"int": int, "float": float, "bool": bool, "str": str}.get(annotation, annotation)
