"""Security policy per organisation, overridable per phone, enforced at the edge.

The edge never trusts the page to enforce anything: clipboard direction, who may connect from
where, how long a session may idle or last, whether telephony requests are forwarded, and how
frames are watermarked are all decided here, from the policy of the phone being viewed.
An organisation's policy is the default for its phones; a phone may override single fields.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

CLIPBOARD_MODES = ("none", "phone-to-browser", "browser-to-phone", "both")
WATERMARK_MODES = ("off", "shared", "viewer")
DEFAULT_ORG = "default"

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class StoredPolicies:
    """What a `PolicyStore` holds: the fields each organisation and each phone sets itself,
    and the organisation of the phones the store knows (None: the default organisation)."""

    orgs: dict[str, dict[str, Any]]
    phones: dict[str, dict[str, Any]]
    phone_orgs: dict[str, str | None]


class PolicyStore(Protocol):
    """Where policies are kept beyond this process (the control plane's database)."""

    async def load(self) -> StoredPolicies: ...

    async def save_org(self, org: str, fields: Mapping[str, Any]) -> None:
        """Replace the fields `org` sets (empty: it sets none)."""
        ...

    async def save_phone(self, instance: str, fields: Mapping[str, Any]) -> None:
        """Replace the fields `instance` overrides (empty: none)."""
        ...


def policy_from(fields: Mapping[str, Any]) -> Policy:
    """A whole policy: the built-in defaults with `fields` (from the config file) set."""
    return dataclasses.replace(Policy(), **_coerce_fields(fields)).validate()


def _merged(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`current` with `changes` applied; a `None` value drops that field."""
    for name in changes:
        if name not in _FIELDS:
            raise PolicyError(f"unknown policy field {name!r}")
    merged = dict(current)
    merged.update(_coerce_fields({k: v for k, v in changes.items() if v is not None}))
    for name in [k for k, v in changes.items() if v is None]:
        merged.pop(name, None)
    return merged


def _stored(fields: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Fields read back from a store: a field this version refuses is dropped with a log line,
    so one bad row never stops the edge."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        try:
            candidate = _coerce_fields({name: value})
            dataclasses.replace(Policy(), **candidate).validate()
        except PolicyError as exc:
            log.warning("policy of %s: stored field %s ignored: %s", where, name, exc)
            continue
        out.update(candidate)
    return out


class PolicyBook:
    """Organisation defaults and per-phone overrides. Changes apply to new checks at once.

    Layers, each setting only some fields: the built-in defaults with the config file's
    `[policy]`, then what the `default` organisation sets at run time, then the phone's
    organisation, then the phone. Reads are synchronous (the rooms check policy on every
    clipboard event); with a `store`, `save_*` writes there first and `load` reads it back.
    """

    def __init__(self, default: Policy | None = None, store: PolicyStore | None = None) -> None:
        self._base = (default or Policy()).validate()
        self._orgs: dict[str, dict[str, Any]] = {}
        self._phone_org: dict[str, str] = {}
        self._overrides: dict[str, dict[str, Any]] = {}
        self.store = store
        self._lock = asyncio.Lock()  # one save at a time: no lost update between two

    def org_of(self, instance: str) -> str:
        return self._phone_org.get(instance, DEFAULT_ORG)

    def assign(self, instance: str, org: str) -> None:
        self._phone_org[instance] = org

    def org_fields(self, org: str) -> dict[str, Any]:
        """The fields `org` sets itself."""
        return dict(self._orgs.get(org, {}))

    def org_policy(self, org: str) -> Policy:
        fields = {**self._orgs.get(DEFAULT_ORG, {}), **self._orgs.get(org, {})}
        return dataclasses.replace(self._base, **fields) if fields else self._base

    def _org_change(self, org: str, fields: Mapping[str, Any]) -> tuple[dict[str, Any], Policy]:
        merged = _merged(self._orgs.get(org, {}), fields)
        layers = {**self._orgs.get(DEFAULT_ORG, {}), **merged} if org != DEFAULT_ORG else merged
        return merged, dataclasses.replace(self._base, **layers).validate()

    def _phone_change(
        self, instance: str, fields: Mapping[str, Any]
    ) -> tuple[dict[str, Any], Policy]:
        merged = _merged(self._overrides.get(instance, {}), fields)
        base = self.org_policy(self.org_of(instance))
        return merged, dataclasses.replace(base, **merged).validate()

    def set_org(self, org: str, fields: Mapping[str, Any]) -> Policy:
        """Set fields of an organisation's policy (others keep their values; `None` drops one)."""
        self._orgs[org], policy = self._org_change(org, fields)
        return policy

    def set_phone(self, instance: str, fields: Mapping[str, Any]) -> Policy:
        """Override fields for one phone; `None` as a value drops that override."""
        self._overrides[instance], policy = self._phone_change(instance, fields)
        return policy

    async def save_org(self, org: str, fields: Mapping[str, Any]) -> Policy:
        """`set_org`, kept in the store first (nothing changes if the store refuses)."""
        async with self._lock:
            merged, policy = self._org_change(org, fields)
            if self.store is not None:
                await self.store.save_org(org, merged)
            self._orgs[org] = merged
            return policy

    async def save_phone(self, instance: str, fields: Mapping[str, Any]) -> Policy:
        """`set_phone`, kept in the store first (nothing changes if the store refuses)."""
        async with self._lock:
            merged, policy = self._phone_change(instance, fields)
            if self.store is not None:
                await self.store.save_phone(instance, merged)
            self._overrides[instance] = merged
            return policy

    async def load(self) -> None:
        """Replace what is in memory with what the store keeps (at start, and when the store
        says phones changed organisation)."""
        if self.store is None:
            return
        async with self._lock:
            stored = await self.store.load()
            self._orgs = {o: _stored(f, f"organisation {o}") for o, f in stored.orgs.items()}
            self._overrides = {p: _stored(f, f"phone {p}") for p, f in stored.phones.items()}
            for instance, org in stored.phone_orgs.items():
                if org is None:
                    self._phone_org.pop(instance, None)
                else:
                    self._phone_org[instance] = org

    def overrides(self, instance: str) -> dict[str, Any]:
        return dict(self._overrides.get(instance, {}))

    def for_phone(self, instance: str) -> Policy:
        base = self.org_policy(self.org_of(instance))
        override = self._overrides.get(instance)
        return dataclasses.replace(base, **override) if override else base
