"""Security policy per organisation, overridable per phone, enforced at the edge.

The edge never trusts the page to enforce anything: clipboard direction, who may connect from
where, how long a session may idle or last, whether telephony requests are forwarded, and how
frames are watermarked are all decided here, from the policy of the phone being viewed.
An organisation's policy is the default for its phones; a phone may override single fields.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CLIPBOARD_MODES = ("none", "phone-to-browser", "browser-to-phone", "both")
WATERMARK_MODES = ("off", "shared", "viewer")
DEFAULT_ORG = "default"


class PolicyError(ValueError):
    """A policy field is unknown or has a bad value; the message names it."""


@dataclass(frozen=True, slots=True)
class Policy:
    """What a phone's viewers may do. Times in seconds; 0 means no limit."""

    # off: no mark; shared: one mark (`watermark_text` or the phone id) for everyone, one
    # encode; viewer: each viewer's identity, so one encode per distinct viewer identity.
    watermark: str = "off"
    watermark_text: str = ""
    clipboard: str = "both"
    clipboard_max_bytes: int = 64 * 1024
    idle_timeout_s: float = 0.0
    max_session_s: float = 0.0
    allowed_cidrs: tuple[str, ...] = ()  # empty: any address
    telephony: bool = True
    telephony_timeout_s: float = 60.0
    preempt: bool = False  # a new owner session replaces the old one(s)

    def validate(self) -> Policy:
        if self.watermark not in WATERMARK_MODES:
            raise PolicyError(f"watermark must be one of {', '.join(WATERMARK_MODES)}")
        if self.clipboard not in CLIPBOARD_MODES:
            raise PolicyError(f"clipboard must be one of {', '.join(CLIPBOARD_MODES)}")
        if not 0 <= self.clipboard_max_bytes <= 1024 * 1024:
            raise PolicyError("clipboard_max_bytes must be 0..1048576")
        for name in ("idle_timeout_s", "max_session_s", "telephony_timeout_s"):
            if not 0 <= getattr(self, name) <= 7 * 86400:
                raise PolicyError(f"{name} must be 0..604800")
        if len(self.watermark_text) > 64:
            raise PolicyError("watermark_text is at most 64 characters")
        for cidr in self.allowed_cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise PolicyError(f"allowed_cidrs: {cidr!r} is not an address or network") from None
        return self

    def clipboard_to_phone(self) -> bool:
        return self.clipboard in ("browser-to-phone", "both")

    def clipboard_to_browser(self) -> bool:
        return self.clipboard in ("phone-to-browser", "both")

    def address_allowed(self, address: str) -> bool:
        """Whether a client at `address` may connect (any, when no CIDR is listed)."""
        if not self.allowed_cidrs:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(c, strict=False) for c in self.allowed_cidrs)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["allowed_cidrs"] = list(self.allowed_cidrs)
        return out


_FIELDS = {f.name: f for f in dataclasses.fields(Policy)}


def _coerce_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Type-check a JSON/TOML mapping of policy fields (bools are not numbers here)."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        field = _FIELDS.get(name)
        if field is None:
            raise PolicyError(f"unknown policy field {name!r}")
        kind = str(field.type)
        if kind == "bool":
            ok = isinstance(value, bool)
        elif kind in ("int", "float"):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = int(value) if kind == "int" and ok else value
        elif kind == "str":
            ok = isinstance(value, str)
        else:  # tuple[str, ...]
            ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
            value = tuple(value) if ok else value
        if not ok:
            raise PolicyError(f"{name} has the wrong type")
        out[name] = value
    return out


class PolicyBook:
    """Organisation defaults and per-phone overrides. Changes apply to new checks at once."""

    def __init__(self, default: Policy | None = None) -> None:
        self._orgs: dict[str, Policy] = {DEFAULT_ORG: (default or Policy()).validate()}
        self._phone_org: dict[str, str] = {}
        self._overrides: dict[str, dict[str, Any]] = {}

    def org_of(self, instance: str) -> str:
        return self._phone_org.get(instance, DEFAULT_ORG)

    def assign(self, instance: str, org: str) -> None:
        self._phone_org[instance] = org

    def org_policy(self, org: str) -> Policy:
        return self._orgs.get(org, self._orgs[DEFAULT_ORG])

    def set_org(self, org: str, fields: Mapping[str, Any]) -> Policy:
        """Replace fields of an organisation's policy (others keep their values)."""
        policy = dataclasses.replace(self.org_policy(org), **_coerce_fields(fields)).validate()
        self._orgs[org] = policy
        return policy

    def set_phone(self, instance: str, fields: Mapping[str, Any]) -> Policy:
        """Override fields for one phone; `None` as a value drops that override."""
        merged = dict(self._overrides.get(instance, {}))
        merged.update(_coerce_fields({k: v for k, v in fields.items() if v is not None}))
        for name in [k for k, v in fields.items() if v is None]:
            if name not in _FIELDS:
                raise PolicyError(f"unknown policy field {name!r}")
            merged.pop(name, None)
        base = self.org_policy(self.org_of(instance))
        policy = dataclasses.replace(base, **merged).validate()
        self._overrides[instance] = merged
        return policy

    def overrides(self, instance: str) -> dict[str, Any]:
        return dict(self._overrides.get(instance, {}))

    def for_phone(self, instance: str) -> Policy:
        base = self.org_policy(self.org_of(instance))
        override = self._overrides.get(instance)
        return dataclasses.replace(base, **override) if override else base
