"""The host's protocol codec: round trips, limits, and untrusted input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypr_engine.agent import codec
from hypr_engine.agent.codec import GUEST_TYPES, HOST_TYPES, MAX_PAYLOAD, SYNC, Frame, FrameDecoder, Msg
from hypr_engine.errors import ProtocolError

frames = st.builds(
    Frame,
    type=st.sampled_from(sorted(GUEST_TYPES)),
    channel=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=2048),
    flags=st.integers(0, 1),
)


@given(st.lists(frames, max_size=20), st.integers(1, 64))
def test_frames_round_trip_in_any_chunking(items, chunk):
    stream = b"".join(codec.encode_frame(f) for f in items)
    decoder = FrameDecoder(GUEST_TYPES)
    out = []
    for i in range(0, len(stream), chunk):
        out += list(decoder.feed(stream[i : i + chunk]))
    assert out == items


@settings(max_examples=300)
@given(st.binary(max_size=4096))
def test_decoder_rejects_garbage_only_with_protocol_error(data):
    decoder = FrameDecoder(GUEST_TYPES)
    try:
        for fr in decoder.feed(data):
            assert len(fr.payload) <= MAX_PAYLOAD
            assert fr.type in GUEST_TYPES
    except ProtocolError:
        pass


def test_oversized_frame_is_refused_before_it_is_buffered():
    decoder = FrameDecoder(GUEST_TYPES)
    header = codec.HEADER.pack(MAX_PAYLOAD + 1, Msg.STDOUT, 0, 0, 1)
    with pytest.raises(ProtocolError, match="exceeds"):
        list(decoder.feed(header))


def test_unknown_type_is_refused():
    with pytest.raises(ProtocolError, match="unexpected frame type"):
        list(FrameDecoder(GUEST_TYPES).feed(codec.frame(Msg.EXEC, 1)))


def test_hunting_skips_stale_bytes_until_sync():
    decoder = FrameDecoder(GUEST_TYPES, hunting=True)
    stale = b"\x00\x00\x00\x05\x83garbage-from-an-old-connection"
    fresh = codec.frame(Msg.HELLO_OK, 0, codec.HelloOk(1, "kestrel", 7, MAX_PAYLOAD).encode())
    # split the SYNC marker across two reads
    out = list(decoder.feed(stale + SYNC[:3])) + list(decoder.feed(SYNC[3:] + fresh))
    assert [f.type for f in out] == [Msg.HELLO_OK]
    assert codec.HelloOk.parse(out[0].payload).workload_pid == 7


def test_host_and_guest_types_do_not_overlap():
    assert not HOST_TYPES & GUEST_TYPES


@given(
    st.lists(st.text(min_size=1).filter(lambda s: "\0" not in s), min_size=1, max_size=5),
    st.lists(st.text().filter(lambda s: "\0" not in s), max_size=5),
    st.booleans(),
    st.integers(1, 500),
    st.integers(1, 500),
)
def test_exec_request_round_trip(argv, env, tty, rows, cols):
    req = codec.ExecRequest(argv=argv, env=env or None, tty=tty, rows=rows if tty else 24, cols=cols if tty else 80,
                            stdin=True, workdir="/w", user="app")
    assert codec.ExecRequest.parse(req.encode()) == req


@given(st.binary(max_size=512))
def test_field_list_decoder_never_overreads(data):
    try:
        fields = codec.decode_fields(data)
    except ProtocolError:
        return
    assert sum(5 + len(v) for _, v in fields) == len(data)


def test_wrong_width_integer_field_is_an_error():
    payload = codec.encode_fields([(codec.HelloOkTag.VERSION, b"\x00\x00\x01")])
    with pytest.raises(ProtocolError, match="must be 2 bytes"):
        codec.HelloOk.parse(payload)
