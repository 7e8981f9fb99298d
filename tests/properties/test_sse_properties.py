"""Properties of the SSE decoder, through its public API only (``feed``/``flush``): network reads may split a stream
anywhere, and no bytes, however malformed, make it raise."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from jsonish import SETTINGS

from modelway.sse import SSEDecoder, SSEEvent, encode_event

#: pieces SSE streams are made of, plus the awkward ones: lone CRs, a UTF-8 character cut in two, invalid UTF-8, NUL
TOKENS = st.sampled_from(
    [
        b"data:", b"data: ", b"event:", b"event: error", b"id:", b"id: 7", b"retry:", b"retry: 100", b"retry: x",
        b":", b": keep-alive", b":HTTP_STATUS/429", b"\n", b"\r", b"\r\n", b"\n\n", b"\r\r", b"[DONE]",
        b'{"choices": [{"delta": {"content": "hi"}}]}', "你好".encode(), "你".encode()[:2], "你".encode()[2:],
        b"\xff", b"\x00", b" ", b"\xef\xbb\xbf",
    ]
)  # fmt: skip
STREAMS = st.lists(TOKENS | st.binary(max_size=6), max_size=40).map(b"".join) | st.binary(max_size=120)


def decode(pieces: list[bytes]) -> list[SSEEvent]:
    d = SSEDecoder()
    out: list[SSEEvent] = []
    for p in pieces:
        out.extend(d.feed(p))
    out.extend(d.flush())
    return out


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(raw)) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]


@SETTINGS
@given(raw=STREAMS, cuts=st.lists(st.integers(0, 400), max_size=12))
def test_any_split_gives_the_events_of_the_whole(raw: bytes, cuts: list[int]) -> None:
    assert decode(split(raw, cuts)) == decode([raw])


@SETTINGS
@given(raw=STREAMS)
def test_byte_by_byte_gives_the_events_of_the_whole(raw: bytes) -> None:
    assert decode([raw[i : i + 1] for i in range(len(raw))]) == decode([raw])


@SETTINGS
@given(raw=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=5))
def test_arbitrary_bytes_never_raise(raw: bytes, cuts: list[int]) -> None:
    for ev in decode(split(raw, cuts)):
        assert isinstance(ev.data, str)


NO_CR = st.text(max_size=30).filter(lambda s: "\r" not in s)
FIELD = st.text(max_size=8).filter(lambda s: "\r" not in s and "\n" not in s)


@SETTINGS
@given(
    events=st.lists(st.tuples(NO_CR, st.none() | FIELD, st.none() | FIELD), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_encoded_events_decode_to_themselves(events: list[tuple[str, str | None, str | None]], cuts: list[int]) -> None:
    # encode_event splits data on "\n" only: data holding "\r" is not representable (and never sent: nothing in
    # the gateway encodes such data, orjson escapes it)
    raw = b"".join(encode_event(data, event=event, id=id) for data, event, id in events)
    assert decode(split(raw, cuts)) == [SSEEvent(data, event, id) for data, event, id in events]
