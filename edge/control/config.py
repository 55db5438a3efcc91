"""Control-plane configuration: what is sold where, at which price, and the billing rules' knobs.

Defaults give a working seed service (two regions of two zones, three flavors) so `make run`
needs no file; a JSON/dict config replaces any part of it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Region:
    """A region and its availability zones."""

    name: str
    zones: tuple[str, ...]
    title: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title or self.name, "zones": list(self.zones)}


@dataclass(frozen=True, slots=True)
class Flavor:
    """A phone spec: screen, frame rate, codec limits, guest kind, and its prices."""

    name: str
    width: int
    height: int
    fps: int
    on_demand_cents_per_hour: int
    month_cents: int
    year_cents: int
    codec: str = "h264"
    max_bitrate_kbps: int = 4000
    guest_kind: str = "simulated"
    guest_options: Mapping[str, Any] = field(default_factory=dict)
    # Seconds a batch may take to be running; 0: the control plane's `start_timeout_s` (a QEMU
    # spec boots slower than a simulated phone).
    start_timeout_s: float = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "codec": self.codec,
            "max_bitrate_kbps": self.max_bitrate_kbps,
            "guest_kind": self.guest_kind,
            "prices": {
                "on_demand_cents_per_hour": self.on_demand_cents_per_hour,
                "month_cents": self.month_cents,
                "year_cents": self.year_cents,
            },
        }


DEFAULT_REGIONS = (
    Region("cn-east", ("cn-east-a", "cn-east-b"), "East China"),
    Region("eu-west", ("eu-west-a", "eu-west-b"), "Western Europe"),
)

DEFAULT_FLAVORS = (
    Flavor("small", 480, 854, 30, on_demand_cents_per_hour=7, month_cents=2900, year_cents=29000),
    Flavor(
        "medium", 720, 1280, 30, on_demand_cents_per_hour=12, month_cents=4900, year_cents=49000
    ),
    Flavor(
        "large",
        1080,
        1920,
        60,
        on_demand_cents_per_hour=25,
        month_cents=9900,
        year_cents=99000,
        max_bitrate_kbps=8000,
    ),
)


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """Everything the control plane is told rather than decides."""

    regions: tuple[Region, ...] = DEFAULT_REGIONS
    flavors: tuple[Flavor, ...] = DEFAULT_FLAVORS
    # Zones this edge node hosts; None means every configured zone.
    node_zones: tuple[str, ...] | None = None
    db_path: str = "cloudphone.db"
    admin_token: str | None = None
    max_count: int = 100
    max_recharge_cents: int = 100_000_000  # one recharge of at most 1,000,000.00
    max_months: int = 36
    max_years: int = 5
    bill_interval_s: int = 3600
    tick_s: float = 5.0  # how often the scheduler meters running phones and looks for due work
    grace_s: int = 7 * 86400  # prepaid: expired -> released
    arrears_s: int = 15 * 86400  # on-demand: frozen -> released
    start_timeout_s: float = 5.0
    # Logins (issue 6): lifetimes, and the rate limits that keep guessing useless.
    session_ttl_s: int = 12 * 3600
    device_ttl_s: int = 30 * 86400  # "trust this browser"
    code_ttl_s: int = 300
    code_max_tries: int = 5
    fail_window_s: int = 900  # failures older than this are forgotten (and locks lifted)
    login_fail_limit: int = 5  # per account name: then locked for the rest of the window
    ip_fail_limit: int = 20  # per client address
    codes_per_window: int = 5  # verification codes sent per account per window
    connect_token_ttl_s: int = 60
    # Audit entries older than this are deleted (checked hourly); 0 keeps them forever.
    audit_retention_days: int = 365
    # Where notices go: "console", "jsonl:<path>" or "webhook:<url>".
    notify: str = "console"

    def __post_init__(self) -> None:
        # checked here, not when the hourly prune first runs inside the billing tick
        days = self.audit_retention_days
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise ValueError(f"audit_retention_days must be a whole number >= 0, not {days!r}")

    def region(self, name: object) -> Region | None:
        return next((r for r in self.regions if r.name == name), None)

    def flavor(self, name: object) -> Flavor | None:
        return next((f for f in self.flavors if f.name == name), None)

    def serves(self, zone: str) -> bool:
        return self.node_zones is None or zone in self.node_zones

    def with_(self, **changes: Any) -> ControlConfig:
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ControlConfig:
        """Build from parsed JSON; unknown keys are an error so typos do not pass silently."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown control config keys: {sorted(unknown)}")
        kw: dict[str, Any] = dict(data)
        if "regions" in kw:
            kw["regions"] = tuple(
                Region(r["name"], tuple(r["zones"]), r.get("title", "")) for r in kw["regions"]
            )
        if "flavors" in kw:
            kw["flavors"] = tuple(Flavor(**f) for f in kw["flavors"])
        if kw.get("node_zones") is not None:
            kw["node_zones"] = tuple(kw["node_zones"])
        return cls(**kw)


def load_control_config(file: str | Path | None, **fixed: Any) -> ControlConfig:
    """Defaults, then a TOML file (top-level keys as in ControlConfig, `[[regions]]`,
    `[[flavors]]`), then `fixed` (the database and admin token the edge was started with)."""
    data: dict[str, Any] = {}
    if file:
        with open(file, "rb") as f:
            data = tomllib.load(f)
    return ControlConfig.from_dict({**data, **fixed})
