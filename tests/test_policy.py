"""Policy book (organisation defaults, per-phone overrides, validation) and the audit file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cloudphone.edge.audit import AuditLog
from cloudphone.edge.config import ConfigError, load_config
from cloudphone.edge.policy import Policy, PolicyBook, PolicyError


def test_phone_overrides_fall_back_to_the_organisation() -> None:
    book = PolicyBook()
    book.set_org("acme", {"clipboard": "none", "idle_timeout_s": 600})
    book.assign("phone-1", "acme")
    assert book.for_phone("phone-1").clipboard == "none"
    assert book.for_phone("phone-2").clipboard == "both"  # the default organisation
    book.set_phone("phone-1", {"clipboard": "phone-to-browser", "allowed_cidrs": ["10.1.0.0/16"]})
    policy = book.for_phone("phone-1")
    assert policy.clipboard == "phone-to-browser" and policy.idle_timeout_s == 600
    assert policy.address_allowed("10.1.2.3") and not policy.address_allowed("10.2.0.1")
    book.set_org("acme", {"idle_timeout_s": 60})
    assert book.for_phone("phone-1").idle_timeout_s == 60, "organisation changes still apply"
    book.set_phone("phone-1", {"clipboard": None})
    assert book.for_phone("phone-1").clipboard == "none"


@pytest.mark.parametrize(
    "fields",
    [
        {"clipboard": "sideways"},
        {"watermark": "loud"},
        {"idle_timeout_s": -1},
        {"idle_timeout_s": True},
        {"allowed_cidrs": ["10.0.0.0/33"]},
        {"allowed_cidrs": "10.0.0.0/8"},
        {"telephony": "yes"},
        {"colour": "red"},
    ],
)
def test_bad_policy_fields_are_refused_and_nothing_changes(fields: dict[str, object]) -> None:
    book = PolicyBook()
    with pytest.raises(PolicyError):
        book.set_phone("phone-1", fields)
    assert book.for_phone("phone-1") == Policy()


def test_policy_comes_from_the_config_file(tmp_path: Path) -> None:
    good = tmp_path / "edge.toml"
    good.write_text('[policy]\nwatermark = "viewer"\nallowed_cidrs = ["127.0.0.0/8"]\n')
    assert load_config(good, environ={}).policy["watermark"] == "viewer"
    from cloudphone.edge.app import create_app

    bad = tmp_path / "bad.toml"
    bad.write_text('[policy]\nclipboard = "sideways"\n')
    with pytest.raises(ConfigError, match="clipboard"):
        create_app(load_config(bad, environ={}))


async def test_audit_log_is_written_as_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    audit.record("session/join", phone="phone-1", actor="bob", role="viewer")
    audit.record("control/grant", phone="phone-1", actor="alice", to="s1")
    audit.record("session/join", phone="phone-2", actor="carol", role="owner")
    await audit.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["action"] for e in lines] == ["session/join", "control/grant", "session/join"]
    assert [e["actor"] for e in audit.entries(phone="phone-1")] == ["bob", "alice"]
    assert [e["actor"] for e in audit.entries(action="control")] == ["alice"]
