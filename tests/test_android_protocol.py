"""scrcpy wire format: our serialisers against the byte vectors of scrcpy's own tests.

Vectors transcribed from scrcpy v4.1 `app/tests/test_control_msg_serialize.c` and
`app/tests/test_device_msg_deserialize.c`; header layouts from `app/src/demuxer.c` (3.x, 4.x).
"""

from __future__ import annotations

import struct

import pytest
from cloudphone.vm.android import annexb, control
from cloudphone.vm.android.control import ControlType, KeyAction, MotionAction
from cloudphone.vm.android.coords import to_device
from cloudphone.vm.android.scrcpy_protocol import (
    AckClipboardMessage,
    ClipboardMessage,
    ProtocolError,
    ServerOptions,
    ServerVersion,
    Session,
    UhidOutputMessage,
    codec_name,
    encode_device_name,
    encode_frame_header,
    encode_session,
    parse_device_message,
    parse_device_name,
    parse_frame_header,
    parse_server_command,
    parse_session,
)

V3 = ServerVersion.parse("3.3.4")
V4 = ServerVersion.parse("4.1")


def test_inject_keycode_vector() -> None:
    msg = control.inject_keycode(KeyAction.UP, control.KEYCODE_ENTER, 5, 0x41)
    assert msg == bytes([0x00, 0x01, 0, 0, 0, 0x42, 0, 0, 0, 0x05, 0, 0, 0, 0x41])


def test_inject_text_vector() -> None:
    assert control.inject_text("hello, world!") == b"\x01\x00\x00\x00\x0dhello, world!"


def test_inject_text_long_is_cut_at_300() -> None:
    msg = control.inject_text("a" * 400)
    assert len(msg) == 5 + 300
    assert msg[:5] == bytes([0x01, 0x00, 0x00, 0x01, 0x2C])
    assert msg[5:] == b"a" * 300


def test_inject_touch_event_vector() -> None:
    msg = control.inject_touch_event(
        MotionAction.DOWN, 0x1234567887654321, 100, 200, 1080, 1920, 1.0, 1, 1
    )
    assert msg == bytes(
        [
            *(0x02, 0x00),
            *(0x12, 0x34, 0x56, 0x78, 0x87, 0x65, 0x43, 0x21),  # pointer id
            *(0x00, 0x00, 0x00, 0x64, 0x00, 0x00, 0x00, 0xC8),  # 100 200
            *(0x04, 0x38, 0x07, 0x80),  # 1080 1920
            *(0xFF, 0xFF),  # pressure
            *(0x00, 0x00, 0x00, 0x01),  # action button
            *(0x00, 0x00, 0x00, 0x01),  # buttons
        ]
    )
    assert len(msg) == 32


def test_scroll_vector_both_ranges() -> None:
    expected = bytes(
        [
            *(0x03, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x04, 0x02, 0x04, 0x38, 0x07, 0x80),
            *(0x7F, 0xFF, 0x80, 0x00, 0x00, 0x00, 0x00, 0x01),
        ]
    )
    # >= 3.3.1 (and 4.x): values in [-16, 16]
    assert (
        control.inject_scroll_event(260, 1026, 1080, 1920, 16, -16, 1, V4.scroll_range) == expected
    )
    # 3.0 .. 3.3.0: values in [-1, 1]
    old = ServerVersion.parse("3.0")
    assert (
        control.inject_scroll_event(260, 1026, 1080, 1920, 1, -1, 1, old.scroll_range) == expected
    )


def test_small_message_vectors() -> None:
    assert control.back_or_screen_on(KeyAction.UP) == bytes([0x04, 0x01])
    assert control.simple(ControlType.EXPAND_NOTIFICATION_PANEL) == bytes([5])
    assert control.simple(ControlType.EXPAND_SETTINGS_PANEL) == bytes([6])
    assert control.simple(ControlType.COLLAPSE_PANELS) == bytes([7])
    assert control.get_clipboard(control.CopyKey.COPY) == bytes([0x08, 0x01])
    assert control.set_display_power(True) == bytes([0x0A, 0x01])
    assert control.rotate_device() == bytes([0x0B])
    assert control.simple(ControlType.OPEN_HARD_KEYBOARD_SETTINGS) == bytes([0x0F])
    assert control.reset_video() == bytes([0x11])
    assert control.camera_set_torch(True) == bytes([0x12, 0x01])
    assert control.simple(ControlType.CAMERA_ZOOM_IN) == bytes([0x13])
    assert control.simple(ControlType.CAMERA_ZOOM_OUT) == bytes([0x14])
    assert control.resize_display(1920, 1080) == bytes(
        [0x15, 1920 >> 8, 1920 & 0xFF, 1080 >> 8, 1080 & 0xFF]
    )
    assert control.start_app("firefox") == b"\x10\x07firefox"
    with pytest.raises(ValueError):
        control.simple(ControlType.INJECT_TEXT)


def test_set_clipboard_vectors() -> None:
    msg = control.set_clipboard(0x0102030405060708, "hello, world!", paste=True)
    assert msg == bytes([0x09, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0, 0, 0, 0x0D]) + b"hello, world!"
    assert len(msg) == 27
    long = control.set_clipboard(
        0x0102030405060708, "a" * (control.CLIPBOARD_TEXT_MAX_LENGTH + 10), True
    )
    assert len(long) == 1 << 18
    assert long[10:14] == struct.pack(">I", control.CLIPBOARD_TEXT_MAX_LENGTH)


def test_uhid_vectors() -> None:
    desc = bytes(range(1, 12))
    assert control.uhid_create(42, desc, "ABC", 0x1234, 0x5678) == bytes(
        [0x0C, 0, 42, 0x12, 0x34, 0x56, 0x78, 3, 65, 66, 67, 0, 11, *desc]
    )
    assert control.uhid_input(42, bytes([1, 2, 3, 4, 5])) == bytes(
        [0x0D, 0, 42, 0, 5, 1, 2, 3, 4, 5]
    )
    assert control.uhid_destroy(42) == bytes([0x0E, 0, 42])


def test_text_split_keeps_characters_whole() -> None:
    text = "é" * 200 + "ab"  # 402 bytes
    pieces = control.split_text(text)
    assert "".join(pieces) == text
    assert all(len(p.encode()) <= 300 for p in pieces)
    assert len(pieces) == 2
    # a cut serialiser never splits a multi-byte character either
    assert control.inject_text("€" * 101)[1:5] == struct.pack(">I", 300)


def test_keycodes() -> None:
    assert control.android_keycode("KeyA") == 29
    assert control.android_keycode("KeyZ") == 54
    assert control.android_keycode("Digit0") == 7
    assert control.android_keycode("Enter") == 66
    assert control.android_keycode("Backspace") == 67
    assert control.android_keycode("F1") == 131
    assert control.android_keycode("Nonsense") is None


def test_device_message_vectors() -> None:
    msg, used = parse_device_message(bytes([0x00, 0, 0, 0, 3]) + b"ABC")
    assert (msg, used) == (ClipboardMessage("ABC"), 8)
    msg, used = parse_device_message(bytes([0x01, 1, 2, 3, 4, 5, 6, 7, 8]))
    assert (msg, used) == (AckClipboardMessage(0x0102030405060708), 9)
    msg, used = parse_device_message(bytes([0x02, 0, 42, 0, 5, 1, 2, 3, 4, 5]))
    assert (msg, used) == (UhidOutputMessage(42, bytes([1, 2, 3, 4, 5])), 10)
    big = bytes([0, *struct.pack(">I", (1 << 18) - 5)]) + b"a" * ((1 << 18) - 5)
    msg, used = parse_device_message(big)
    assert used == 1 << 18 and isinstance(msg, ClipboardMessage) and len(msg.text) == (1 << 18) - 5


def test_device_message_incomplete_and_bad() -> None:
    assert parse_device_message(b"") == (None, 0)
    assert parse_device_message(bytes([0x00, 0, 0, 0, 3]) + b"AB") == (None, 0)
    assert parse_device_message(bytes([0x01, 1, 2])) == (None, 0)
    with pytest.raises(ProtocolError):
        parse_device_message(bytes([0x07]))
    with pytest.raises(ProtocolError):
        parse_device_message(bytes([0x00, 0x7F, 0, 0, 0]))


def test_frame_header_layouts_differ_between_3_and_4() -> None:
    # 3.x: config = bit 63, key frame = bit 62
    h = struct.pack(">QI", (1 << 62) | 12345, 100)
    parsed = parse_frame_header(h, V3)
    assert parsed.keyframe and not parsed.config and parsed.pts == 12345 and parsed.size == 100
    assert parse_frame_header(struct.pack(">QI", 1 << 63, 20), V3).config
    # 4.x: session = bit 63, config = bit 62, key frame = bit 61
    parsed = parse_frame_header(struct.pack(">QI", (1 << 61) | 777, 5), V4)
    assert parsed.keyframe and parsed.pts == 777
    assert parse_frame_header(struct.pack(">QI", 1 << 62, 5), V4).config
    for version in (V3, V4):
        for kw in ({"config": True}, {"keyframe": True, "pts": 99}, {"pts": 42}):
            raw = encode_frame_header(10, version, **kw)
            back = parse_frame_header(raw, version)
            assert back.config == kw.get("config", False)
            assert back.keyframe == kw.get("keyframe", False)


def test_frame_header_rejects_nonsense() -> None:
    with pytest.raises(ProtocolError, match="absurd"):
        parse_frame_header(struct.pack(">QI", 0, 0xFFFFFFFF), V3)
    with pytest.raises(ProtocolError, match="size 0"):
        parse_frame_header(struct.pack(">QI", 0, 0), V3)
    with pytest.raises(ProtocolError, match="session"):
        parse_frame_header(struct.pack(">QI", 1 << 63, 10), V4)


def test_session_packet() -> None:
    raw = bytes([0x80, 0, 0, 1, 0, 0, 0x04, 0x38, 0, 0, 0x07, 0x80])
    assert parse_session(raw) == Session(1080, 1920, True)
    assert encode_session(Session(1080, 1920, True)) == raw
    with pytest.raises(ProtocolError, match="absurd"):
        parse_session(bytes([0x80, 0, 0, 0]) + struct.pack(">II", 0, 1920))
    with pytest.raises(ProtocolError, match="absurd"):
        parse_session(bytes([0x80, 0, 0, 0]) + struct.pack(">II", 100000, 1920))


def test_codec_ids() -> None:
    assert codec_name(0x68323634) == "h264"
    assert codec_name(0x00617631) == "av1"
    with pytest.raises(ProtocolError, match="unknown video codec"):
        codec_name(0xDEADBEEF)


def test_device_name_field() -> None:
    field = encode_device_name("Pixel 8 " + "€" * 30)
    assert len(field) == 64 and field[-1] == 0
    assert parse_device_name(field).startswith("Pixel 8 €")


def test_versions_and_server_command() -> None:
    assert str(ServerVersion.parse("3.0")) == "3.0"
    assert str(ServerVersion.parse("v3.3.4")) == "3.3.4"
    with pytest.raises(ValueError, match="too old"):
        ServerVersion.parse("2.7")
    opts = ServerOptions(version=V3, scid=0x1234ABCD, max_size=1024, video_bit_rate=3_000_000)
    cmd = opts.command()
    assert cmd.startswith(
        "CLASSPATH=/data/local/tmp/scrcpy-server.jar app_process /"
        " com.genymobile.scrcpy.Server 3.3.4 "
    )
    _, version, parsed = parse_server_command(cmd)
    assert version == V3 and parsed["scid"] == "1234abcd" and parsed["video_codec"] == "h264"
    assert parsed["max_size"] == "1024" and parsed["audio"] == "false"
    assert parsed["tunnel_forward"] == "true"
    assert opts.socket_name == "scrcpy_1234abcd"


@pytest.mark.parametrize(
    ("rotation", "expected"),
    [
        (0, (90, 320, 720, 1280)),
        (90, (320, 630, 1280, 720)),
        (180, (630, 960, 720, 1280)),
        (270, (960, 90, 1280, 720)),
    ],
)
def test_coordinate_mapping_through_rotation(
    rotation: int, expected: tuple[int, int, int, int]
) -> None:
    # ROTATION_90: the UI's top-left is the picture's top-right corner.
    assert to_device(0.125, 0.25, 720, 1280, rotation) == expected


def test_coordinates_clamp_to_screen() -> None:
    assert to_device(1.0, 1.0, 720, 1280) == (719, 1279, 720, 1280)
    assert to_device(-0.5, 2.0, 720, 1280) == (0, 1279, 720, 1280)


def test_sps_size_of_real_x264_stream() -> None:
    import numpy as np
    from cloudphone.codecs import EncoderConfig, create_encoder
    from cloudphone.vm.guest import RawFrame

    for w, h in ((320, 640), (360, 200)):
        enc = create_encoder(EncoderConfig("h264", w, h, 30))
        pic = np.full((h * 3 // 2, w), 128, dtype=np.uint8)
        packets = enc.encode(RawFrame(pic, "yuv420p", 0.0), 0, True)
        enc.close()
        config, rest = annexb.split_parameter_sets(packets[0].data)
        assert annexb.nal_types(config) == [annexb.NAL_SPS, annexb.NAL_PPS]
        assert annexb.NAL_IDR in annexb.nal_types(rest)
        assert annexb.find_sps_size(config) == (w, h)
