"""Packaging and configuration: the import root works from anywhere; config sources layer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cloudphone.edge.config import ConfigError, load_config


def test_every_room_imports_from_outside_the_repo(tmp_path: Path) -> None:
    code = (
        "import cloudphone.vm, cloudphone.codecs, cloudphone.signaling, cloudphone.edge, cloudphone.static;"
        "import cloudphone.vm.simulated, cloudphone.edge.app, cloudphone.codecs.h264;"
        "import codecs; assert hasattr(codecs, 'lookup'), 'stdlib codecs must not be shadowed';"
        "from cloudphone.edge.app import static_root; assert (static_root() / 'player.html').exists()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_cli_help_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cloudphone.edge.cli", "serve", "--help"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "--phones" in result.stdout


def test_config_layers_file_env_cli(tmp_path: Path) -> None:
    file = tmp_path / "edge.toml"
    file.write_text('port = 9000\nfps = 24\ncodec = "vp8"\nice_servers = ["stun:127.0.0.1:3478"]\n')
    config = load_config(
        file, environ={"CLOUDPHONE_FPS": "20", "CLOUDPHONE_STAMP": "yes"}, overrides={"phones": 3}
    )
    assert (config.port, config.fps, config.codec, config.phones, config.stamp) == (
        9000,
        20,
        "vp8",
        3,
        True,
    )
    assert [s.urls for s in config.ice().servers] == [("stun:127.0.0.1:3478",)]


@pytest.mark.parametrize(
    "overrides",
    [
        {"size": "big"},
        {"size": "721x1280"},
        {"codec": "h265"},
        {"fps": 0},
        {"ice_servers": ["http://x"]},
        {"turn_urls": ["turn:127.0.0.1"]},
        {"ice_announce": ["1.2.3.4"]},
    ],
)
def test_bad_config_is_refused_with_a_reason(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_config(environ={}, overrides=overrides)


def test_unknown_file_option_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "edge.toml"
    file.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="colour"):
        load_config(file, environ={})


def test_ice_host_addresses_follow_the_bind_address() -> None:
    assert load_config(environ={}).host_addresses() == ["127.0.0.1"]
    assert load_config(environ={}, overrides={"host": "0.0.0.0"}).host_addresses() == [
        "auto",
        "127.0.0.1",
    ]


def test_turn_rest_credentials_expire_and_verify() -> None:
    import base64
    import hashlib
    import hmac

    config = load_config(
        environ={}, overrides={"turn_urls": ["turn:127.0.0.1:3478"], "turn_secret": "s3cret"}
    )
    (server,) = config.ice().for_session("alice", now=1000.0)
    assert server.username == f"{1000 + 3600}:alice"
    expected = base64.b64encode(
        hmac.new(b"s3cret", server.username.encode(), hashlib.sha1).digest()
    ).decode()
    assert server.credential == expected


def test_relay_only_needs_a_turn_server() -> None:
    with pytest.raises(ConfigError, match="ice_relay_only needs a TURN server"):
        load_config(environ={}, overrides={"ice_relay_only": True})
    with pytest.raises(ConfigError, match="ice_relay_only needs a TURN server"):
        load_config(environ={}, overrides={"ice_relay_only": True, "ice_servers": ["stun:1.2.3.4"]})
    ok = load_config(
        environ={}, overrides={"ice_relay_only": True, "ice_servers": ["turn:127.0.0.1:3478"]}
    )
    assert ok.ice_relay_only
    assert load_config(environ={"CLOUDPHONE_ICE_RELAY_ONLY": "1"}, overrides={
        "turn_urls": ["turn:127.0.0.1:3478"], "turn_secret": "s"}).ice_relay_only  # fmt: skip
