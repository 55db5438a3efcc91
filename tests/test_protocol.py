"""Signaling and input validation: every bad input gets a precise, typed refusal."""

from __future__ import annotations

import json

import pytest
from cloudphone.edge.input import InputError, parse_input
from cloudphone.signaling.protocol import (
    MAX_MESSAGE_BYTES,
    Answer,
    Bye,
    Candidate,
    ErrorCode,
    Hello,
    ProtocolError,
    parse_client_message,
)
from cloudphone.vm.guest import KeyEvent, NavEvent, TextEvent, TouchEvent
from hypothesis import given, settings
from hypothesis import strategies as st


def test_valid_client_messages() -> None:
    assert parse_client_message('{"v":1,"type":"hello","instance":"phone-1"}') == Hello("phone-1")
    hello = parse_client_message(
        '{"type":"hello","instance":"p","role":"viewer","token":"t","codec":"vp8"}'
    )
    assert hello == Hello("p", "viewer", "t", "vp8")
    assert parse_client_message('{"type":"answer","sdp":"v=0\\r\\n"}') == Answer("v=0\r\n")
    cand = parse_client_message(
        '{"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 5 typ host","sdpMid":"0","sdpMLineIndex":0}'
    )
    assert isinstance(cand, Candidate) and cand.sdp_mid == "0"
    assert parse_client_message('{"type":"bye"}') == Bye()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", ErrorCode.BAD_JSON),
        (b"\xff\xfe", ErrorCode.BAD_JSON),
        ("[1,2]", ErrorCode.BAD_MESSAGE),
        ('{"instance":"p"}', ErrorCode.BAD_MESSAGE),
        ('{"type":"launch"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type":"hello"}', ErrorCode.BAD_MESSAGE),
        ('{"type":"hello","instance":5}', ErrorCode.BAD_MESSAGE),
        ('{"type":"hello","instance":""}', ErrorCode.BAD_MESSAGE),
        ('{"type":"hello","instance":"p","role":"god"}', ErrorCode.BAD_MESSAGE),
        ('{"type":"hello","instance":"p","codec":"h265"}', ErrorCode.BAD_MESSAGE),
        ('{"type":"hello","instance":"p","extra":1}', ErrorCode.BAD_MESSAGE),
        ('{"type":"answer","sdp":true}', ErrorCode.BAD_MESSAGE),
        ('{"type":"answer","sdp":"hello"}', ErrorCode.BAD_MESSAGE),
        ('{"type":"candidate","candidate":"c","sdpMLineIndex":-1}', ErrorCode.BAD_MESSAGE),
        ('{"type":"candidate","candidate":"c","sdpMLineIndex":true}', ErrorCode.BAD_MESSAGE),
        ('{"v":2,"type":"bye"}', ErrorCode.UNSUPPORTED_VERSION),
    ],
)
def test_bad_client_messages(raw: str | bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(raw)
    assert info.value.code == code
    assert info.value.message


def test_oversize_message_is_fatal() -> None:
    raw = json.dumps({"type": "answer", "sdp": "v=0" + "x" * MAX_MESSAGE_BYTES})
    with pytest.raises(ProtocolError) as info:
        parse_client_message(raw)
    assert info.value.code == ErrorCode.TOO_LARGE and info.value.fatal


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.binary(),
        st.dictionaries(st.text(), st.none() | st.integers() | st.text()).map(json.dumps),
    )
)
def test_fuzzed_signaling_never_crashes(raw: str | bytes) -> None:
    try:
        parse_client_message(raw)
    except ProtocolError as exc:
        assert exc.code in set(ErrorCode)


def test_valid_input_messages() -> None:
    assert parse_input(
        '{"type":"touch","a":"down","id":3,"x":0.25,"y":1,"p":0.5,"seq":7}'
    ) == TouchEvent("down", 3, 0.25, 1.0, 0.5, 7)
    assert parse_input('{"type":"key","a":"press","code":"KeyA","shift":true}') == KeyEvent(
        "press", "KeyA", True, 0
    )
    assert parse_input('{"type":"text","s":"héllo"}') == TextEvent("héllo")
    assert parse_input('{"type":"nav","k":"recents","seq":2}') == NavEvent("recents", 2)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("nope", "bad-json"),
        ('"str"', "bad-message"),
        ('{"type":"swipe"}', "unknown-type"),
        ('{"type":"touch","a":"down","id":0,"x":1.5,"y":0.5}', "out-of-range"),
        ('{"type":"touch","a":"down","id":0,"x":-0.01,"y":0.5}', "out-of-range"),
        ('{"type":"touch","a":"down","id":10,"x":0.5,"y":0.5}', "out-of-range"),
        ('{"type":"touch","a":"down","id":0,"x":"0.5","y":0.5}', "bad-message"),
        ('{"type":"touch","a":"down","id":0,"x":NaN,"y":0.5}', "bad-message"),
        ('{"type":"touch","a":"down","id":0,"x":true,"y":0.5}', "bad-message"),
        ('{"type":"touch","a":"hover","id":0,"x":0.5,"y":0.5}', "bad-message"),
        ('{"type":"touch","a":"down","id":0,"x":0.5}', "bad-message"),
        ('{"type":"touch","a":"down","id":0,"x":0.5,"y":0.5,"z":1}', "bad-message"),
        ('{"type":"touch","a":"down","id":0,"x":0.5,"y":0.5,"seq":-1}', "bad-message"),
        ('{"type":"key","a":"down","code":"<script>"}', "bad-message"),
        ('{"type":"key","a":"down","code":"KeyA","shift":"yes"}', "bad-message"),
        ('{"type":"text","s":""}', "bad-message"),
        ('{"type":"text","s":"' + "x" * 5000 + '"}', "too-large"),
        ('{"type":"nav","k":"power"}', "bad-message"),
        ('{"type":"text","s":"' + "x" * 20000 + '"}', "too-large"),
    ],
)
def test_bad_input_messages(raw: str, code: str) -> None:
    with pytest.raises(InputError) as info:
        parse_input(raw)
    assert info.value.code == code
