"""The scrcpy-server wire format: stream headers, device messages, server arguments.

Hand-written because no well-kept Python library speaks it, and scrcpy itself calls the
protocol internal: it changes between releases and client and server must match exactly. The
facts here come from scrcpy's `doc/develop.md`, `app/src/demuxer.c`, `app/src/device_msg.c`
and `server/.../Streamer.java`, for servers 3.x and 4.x:

* video socket: codec id (u32 BE); then in 3.x the initial size (u32 width, u32 height), in
  4.x a 12-byte *session packet* (MSB set) for every capture session (start, rotation);
* media packets: a 12-byte header = u64 PTS with flags in its top bits (3.x: config bit 63,
  key frame bit 62; 4.x: session bit 63 clear, config 62, key frame 61) + u32 payload size;
* control socket, device → client: CLIPBOARD (0) and ACK_CLIPBOARD (1), UHID_OUTPUT (2).

Everything is pure functions over bytes so the fakes and the tests can reuse it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# In place of a codec id, the device may write 0 (it disabled the stream: e.g. no audio capture
# before Android 11) or 1 (configuration error). Streamer.writeDisableStream.
CODEC_STREAM_DISABLED = 0
CODEC_STREAM_ERROR = 1
# Codec ids: the codec name in ASCII as a big-endian u32.
CODEC_H264 = 0x68323634
CODEC_H265 = 0x68323635
CODEC_AV1 = 0x00617631
CODEC_VP8 = 0x00767038
CODEC_VP9 = 0x00767039
CODEC_OPUS = 0x6F707573
CODEC_AAC = 0x00616163
CODEC_FLAC = 0x666C6163
CODEC_RAW = 0x00726177

VIDEO_CODECS: dict[int, str] = {
    CODEC_H264: "h264",
    CODEC_H265: "h265",
    CODEC_AV1: "av1",
    CODEC_VP8: "vp8",
    CODEC_VP9: "vp9",
}
AUDIO_CODECS: dict[int, str] = {
    CODEC_OPUS: "opus",
    CODEC_AAC: "aac",
    CODEC_FLAC: "flac",
    CODEC_RAW: "raw",
}

HEADER_SIZE = 12
DEVICE_NAME_FIELD_LENGTH = 64
#: Bound on a single media packet; a 4K keyframe is well under this. Bigger means a broken peer.
MAX_PACKET_SIZE = 16 * 1024 * 1024
#: Bound on a video dimension in a session packet or the 3.x size header.
MAX_VIDEO_DIMENSION = 8192
#: scrcpy's SC_CONTROL_MSG_MAX_SIZE / DEVICE_MSG_MAX_SIZE.
MAX_MESSAGE_SIZE = 1 << 18

DEVICE_MSG_CLIPBOARD = 0
DEVICE_MSG_ACK_CLIPBOARD = 1
DEVICE_MSG_UHID_OUTPUT = 2

SOCKET_NAME_PREFIX = "scrcpy_"
SERVER_CLASS = "com.genymobile.scrcpy.Server"
DEVICE_SERVER_PATH = "/data/local/tmp/scrcpy-server.jar"


class ProtocolError(ValueError):
    """The device sent something that cannot be valid for the negotiated protocol."""


@dataclass(frozen=True, slots=True, order=True)
class ServerVersion:
    """A scrcpy release ("3.3.4"); decides the wire layout. 3.0 is the oldest we speak."""

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> ServerVersion:
        parts = text.strip().lstrip("v").split(".")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"bad scrcpy version {text!r}") from None
        if not 2 <= len(nums) <= 3:
            raise ValueError(f"bad scrcpy version {text!r}")
        version = cls(*nums)
        if version < ServerVersion(3, 0):
            raise ValueError(f"scrcpy-server {text} is too old: 3.0 or newer is needed")
        return version

    def __str__(self) -> str:
        # scrcpy checks the version string for exact equality: "3.0", not "3.0.0".
        if self.patch:
            return f"{self.major}.{self.minor}.{self.patch}"
        return f"{self.major}.{self.minor}"

    @property
    def has_session_packets(self) -> bool:
        return self.major >= 4

    @property
    def config_flag(self) -> int:
        return 1 << 62 if self.has_session_packets else 1 << 63

    @property
    def keyframe_flag(self) -> int:
        return 1 << 61 if self.has_session_packets else 1 << 62

    @property
    def scroll_range(self) -> float:
        """Scroll values on the wire are i16 fixed point of value/range (range 16 since 3.3.1)."""
        return 16.0 if self >= ServerVersion(3, 3, 1) else 1.0


@dataclass(frozen=True, slots=True)
class Session:
    """A capture session started (first picture, rotation, resize): the new video size."""

    width: int
    height: int
    client_resized: bool = False


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """One media packet's header; `size` payload bytes follow it."""

    pts: int | None  # None for config packets
    config: bool
    keyframe: bool
    size: int


def codec_name(codec_id: int, *, video: bool = True) -> str:
    table = VIDEO_CODECS if video else AUDIO_CODECS
    try:
        return table[codec_id]
    except KeyError:
        raise ProtocolError(
            f"unknown {'video' if video else 'audio'} codec id 0x{codec_id:08x}"
        ) from None


def encode_codec_id(name: str) -> bytes:
    for table in (VIDEO_CODECS, AUDIO_CODECS):
        for cid, cname in table.items():
            if cname == name:
                return struct.pack(">I", cid)
    raise ValueError(f"unknown codec {name!r}")


def _check_size(width: int, height: int) -> None:
    if not (0 < width <= MAX_VIDEO_DIMENSION and 0 < height <= MAX_VIDEO_DIMENSION):
        raise ProtocolError(f"absurd video size {width}x{height}")


def is_session_header(header: bytes) -> bool:
    return bool(header[0] & 0x80)


def parse_session(header: bytes) -> Session:
    """A 4.x session packet (12 bytes, MSB set)."""
    if len(header) != HEADER_SIZE or not is_session_header(header):
        raise ProtocolError("not a session packet")
    flags, width, height = struct.unpack(">III", header)
    _check_size(width, height)
    return Session(width, height, bool(flags & 1))


def encode_session(session: Session) -> bytes:
    return struct.pack(
        ">III", 0x8000_0000 | int(session.client_resized), session.width, session.height
    )


def parse_initial_size(data: bytes) -> Session:
    """The 3.x video size header that follows the codec id (u32 width, u32 height)."""
    width, height = struct.unpack(">II", data)
    _check_size(width, height)
    return Session(width, height)


def parse_frame_header(header: bytes, version: ServerVersion) -> FrameHeader:
    if len(header) != HEADER_SIZE:
        raise ProtocolError("truncated frame header")
    pts_flags, size = struct.unpack(">QI", header)
    if version.has_session_packets and pts_flags >> 63:
        raise ProtocolError("session packet where a media packet was expected")
    config = bool(pts_flags & version.config_flag)
    keyframe = bool(pts_flags & version.keyframe_flag)
    if size == 0:
        raise ProtocolError("media packet of size 0")
    if size > MAX_PACKET_SIZE:
        raise ProtocolError(f"absurd media packet size {size}")
    pts = None if config else pts_flags & (version.keyframe_flag - 1)
    return FrameHeader(pts=pts, config=config, keyframe=keyframe, size=size)


def encode_frame_header(
    size: int, version: ServerVersion, *, pts: int = 0, config: bool = False, keyframe: bool = False
) -> bytes:
    if config:
        value = version.config_flag
    else:
        value = pts & (version.keyframe_flag - 1)
        if keyframe:
            value |= version.keyframe_flag
    return struct.pack(">QI", value, size)


def encode_device_name(name: str) -> bytes:
    """The 64-byte NUL-padded device name field sent first on the first socket."""
    raw = name.encode("utf-8")[: DEVICE_NAME_FIELD_LENGTH - 1]
    while raw:  # do not cut a UTF-8 sequence in half
        try:
            raw.decode("utf-8")
            break
        except UnicodeDecodeError:
            raw = raw[:-1]
    return raw.ljust(DEVICE_NAME_FIELD_LENGTH, b"\0")


def parse_device_name(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "replace")


# ---------------------------------------------------------------- device messages


@dataclass(frozen=True, slots=True)
class ClipboardMessage:
    text: str


@dataclass(frozen=True, slots=True)
class AckClipboardMessage:
    sequence: int


@dataclass(frozen=True, slots=True)
class UhidOutputMessage:
    id: int
    data: bytes


DeviceMessage = ClipboardMessage | AckClipboardMessage | UhidOutputMessage


def parse_device_message(buf: bytes | bytearray) -> tuple[DeviceMessage | None, int]:
    """Parse one device message from the front of `buf`.

    Returns (message, bytes consumed), or (None, 0) when `buf` holds no complete message yet.
    An unknown type or an oversize message raises `ProtocolError` (the stream cannot recover).
    """
    if not buf:
        return None, 0
    kind = buf[0]
    if kind == DEVICE_MSG_CLIPBOARD:
        if len(buf) < 5:
            return None, 0
        (length,) = struct.unpack_from(">I", buf, 1)
        if length > MAX_MESSAGE_SIZE - 5:
            raise ProtocolError(f"clipboard message of {length} bytes")
        if len(buf) < 5 + length:
            return None, 0
        text = bytes(buf[5 : 5 + length]).decode("utf-8", "replace")
        return ClipboardMessage(text), 5 + length
    if kind == DEVICE_MSG_ACK_CLIPBOARD:
        if len(buf) < 9:
            return None, 0
        (seq,) = struct.unpack_from(">Q", buf, 1)
        return AckClipboardMessage(seq), 9
    if kind == DEVICE_MSG_UHID_OUTPUT:
        if len(buf) < 5:
            return None, 0
        uid, size = struct.unpack_from(">HH", buf, 1)
        if len(buf) < 5 + size:
            return None, 0
        return UhidOutputMessage(uid, bytes(buf[5 : 5 + size])), 5 + size
    raise ProtocolError(f"unknown device message type {kind}")


def encode_device_message(msg: DeviceMessage) -> bytes:
    if isinstance(msg, ClipboardMessage):
        raw = msg.text.encode("utf-8")
        return struct.pack(">BI", DEVICE_MSG_CLIPBOARD, len(raw)) + raw
    if isinstance(msg, AckClipboardMessage):
        return struct.pack(">BQ", DEVICE_MSG_ACK_CLIPBOARD, msg.sequence)
    return struct.pack(">BHH", DEVICE_MSG_UHID_OUTPUT, msg.id, len(msg.data)) + msg.data


# ---------------------------------------------------------------- server start-up


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """How we ask scrcpy-server to stream: the options the edge relies on, version-matched."""

    version: ServerVersion
    scid: int
    max_size: int = 1280
    video_bit_rate: int = 4_000_000
    max_fps: int = 30
    audio: bool = False
    control: bool = True
    tunnel_forward: bool = True
    # H.264 Constrained Baseline: what every WebRTC browser decodes (profile 1 = Baseline in
    # MediaCodecInfo.CodecProfileLevel; level 0x200 = 3.1 keeps Safari happy up to 1280x720).
    video_codec_options: str = "profile:int=1"
    log_level: str = "info"

    @property
    def socket_name(self) -> str:
        return f"{SOCKET_NAME_PREFIX}{self.scid:08x}"

    def args(self) -> list[str]:
        """`key=value` arguments after the version, as scrcpy's own client builds them."""
        out = [
            f"scid={self.scid:08x}",
            f"log_level={self.log_level}",
            "video_codec=h264",
            f"video_bit_rate={self.video_bit_rate}",
            f"max_size={self.max_size}",
            f"max_fps={self.max_fps}",
        ]
        if not self.audio:
            out.append("audio=false")
        else:
            out.append("audio_codec=opus")
        if not self.control:
            out.append("control=false")
        if self.tunnel_forward:
            out.append("tunnel_forward=true")
        if self.video_codec_options:
            out.append(f"video_codec_options={self.video_codec_options}")
        # Keep the phone's screen behaviour ours, not the server's.
        out += ["cleanup=true", "power_on=true", "clipboard_autosync=true"]
        return out

    def command(self, jar_path: str = DEVICE_SERVER_PATH) -> str:
        """The shell command line that starts the server on the device."""
        return " ".join(
            [
                f"CLASSPATH={jar_path}",
                "app_process",
                "/",
                SERVER_CLASS,
                str(self.version),
                *self.args(),
            ]
        )


def parse_server_command(command: str) -> tuple[str, ServerVersion, dict[str, str]]:
    """Inverse of `ServerOptions.command`, for the fake device: (classpath, version, options)."""
    words = command.split()
    if len(words) < 5 or not words[0].startswith("CLASSPATH=") or words[1] != "app_process":
        raise ValueError(f"not a scrcpy-server command: {command!r}")
    if words[3] != SERVER_CLASS:
        raise ValueError(f"unexpected main class {words[3]!r}")
    version = ServerVersion.parse(words[4])
    opts = {}
    for word in words[5:]:
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"bad server argument {word!r}")
        opts[key] = value
    return words[0].removeprefix("CLASSPATH="), version, opts
