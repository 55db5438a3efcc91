"""Configuration of one Android guest, read from `GuestSpec.options`.

Kept apart from the guest so the CLI/config layer and the tests build it the same way and a
typo in a key fails at creation, not minutes later on the first reconnect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from cloudphone.vm.android.adb import DEFAULT_ADDRESS
from cloudphone.vm.android.scrcpy_protocol import ServerVersion

# Keys the edge puts into every guest's options; meaningless for a real device.
_EDGE_WIDE = frozenset({"stamp"})


@dataclass(frozen=True, slots=True)
class AndroidOptions:
    serial: str
    adb: str = DEFAULT_ADDRESS  # "tcp:HOST:PORT" or "unix:PATH" of the adb server
    server_jar: str = ""  # local path of the user-supplied scrcpy-server jar
    server_version: str = "3.3.4"  # must equal the jar's version exactly
    mode: Literal["scrcpy", "screenrecord"] = "scrcpy"
    tunnel: Literal["forward", "reverse"] = "forward"
    max_size: int = 1280
    bit_rate: int = 4_000_000
    max_fps: int = 30
    control: bool = True
    # Opus passthrough (Android 11+; older devices disable it by themselves). Off by default:
    # a page must start muted for autoplay to keep working once sound is in the stream.
    audio: bool = False
    connect_timeout: float = 10.0
    retry_initial_s: float = 0.5
    retry_max_s: float = 15.0
    retry_limit: int = 0  # failed reconnects before giving up; 0 = keep trying
    keyframe_min_interval_s: float = 0.25  # RESET_VIDEO restarts the encoder: not per PLI burst
    clipboard_ack_timeout_s: float = 2.0
    screenrecord_time_limit_s: int = 170  # screenrecord stops itself at 180 s

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> AndroidOptions:
        known = {f.name for f in fields(cls)}
        options = {k: v for k, v in options.items() if k not in _EDGE_WIDE}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown android options: {sorted(unknown)}")
        if not options.get("serial"):
            raise ValueError("android guests need a device serial")
        opts = cls(**dict(options))
        if opts.mode not in ("scrcpy", "screenrecord"):
            raise ValueError(f"unknown android mode {opts.mode!r}")
        if opts.tunnel not in ("forward", "reverse"):
            raise ValueError(f"unknown tunnel {opts.tunnel!r}")
        if opts.mode == "scrcpy":
            if not opts.server_jar:
                raise ValueError("scrcpy mode needs server_jar (the scrcpy-server file to push)")
            ServerVersion.parse(opts.server_version)
        return opts

    @property
    def version(self) -> ServerVersion:
        return ServerVersion.parse(self.server_version)
