from __future__ import annotations

import pytest

from modelway.sse import SSEDecoder, SSEEvent, encode_event


def decode_all(pieces: list[bytes]) -> list[SSEEvent]:
    d = SSEDecoder()
    out: list[SSEEvent] = []
    for p in pieces:
        out.extend(d.feed(p))
    out.extend(d.flush())
    return out


def split_every(data: bytes, n: int) -> list[bytes]:
    return [data[i : i + n] for i in range(0, len(data), n)]


class TestSSEDecoder:
    def test_data_with_and_without_space(self) -> None:
        evs = decode_all([b'data: {"a":1}\n\ndata:{"b":2}\n\n'])
        assert [e.data for e in evs] == ['{"a":1}', '{"b":2}']

    def test_comments_are_skipped(self) -> None:
        raw = b": keep-alive\n\n:HTTP_STATUS/200\ndata: x\n\n"
        assert [e.data for e in decode_all([raw])] == ["x"]

    def test_event_and_id_fields(self) -> None:
        raw = b'id:1\nevent:result\n:HTTP_STATUS/200\ndata:{}\n\nid:2\nevent:error\ndata:{"code":"X"}\n\n'
        evs = decode_all([raw])
        assert [(e.id, e.event, e.data) for e in evs] == [("1", "result", "{}"), ("2", "error", '{"code":"X"}')]

    def test_multiline_data_is_joined(self) -> None:
        evs = decode_all([b"data: line1\ndata: line2\n\n"])
        assert evs == [SSEEvent("line1\nline2")]

    def test_done_or_no_done(self) -> None:
        assert [e.data for e in decode_all([b"data: a\n\ndata: [DONE]\n\n"])] == ["a", "[DONE]"]
        assert [e.data for e in decode_all([b"data: a\n\n"])] == ["a"]

    def test_last_event_without_blank_line_is_flushed(self) -> None:
        assert [e.data for e in decode_all([b"data: a\n\ndata: tail"])] == ["a", "tail"]

    @pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
    def test_any_split_gives_same_events(self, size: int) -> None:
        raw = (
            b'id:1\r\nevent:result\r\ndata:{"t":"\xe4\xbd\xa0\xe5\xa5\xbd"}\r\n\r\n'
            + 'data: {"t": "世界"}\n\n: keep-alive\n\ndata: [DONE]\n\n'.encode()
        )
        evs = decode_all(split_every(raw, size))
        assert [e.data for e in evs] == ['{"t":"你好"}', '{"t": "世界"}', "[DONE]"]
        assert evs[0].event == "result"

    def test_utf8_split_inside_character(self) -> None:
        raw = "data: 你好世界\n\n".encode()
        cut = raw.index("好".encode()) + 1  # in the middle of a 3-byte character
        assert decode_all([raw[:cut], raw[cut:]]) == [SSEEvent("你好世界")]

    def test_cr_line_ends_split_across_reads(self) -> None:
        assert [e.data for e in decode_all([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"])] == ["a", "b"]

    def test_blank_lines_alone_make_no_event(self) -> None:
        assert decode_all([b"\n\n\n\n"]) == []


class TestEncode:
    def test_round_trip(self) -> None:
        raw = encode_event('{"x": "你好"}', event="delta", id="7") + encode_event("a\nb")
        evs = decode_all([raw])
        assert evs == [SSEEvent('{"x": "你好"}', "delta", "7"), SSEEvent("a\nb")]

    def test_plain_data_bytes(self) -> None:
        assert encode_event(b"[DONE]") == b"data: [DONE]\n\n"


def test_last_comment_rides_on_its_event() -> None:
    evs = decode_all([b"id:1\nevent:error\n:HTTP_STATUS/429\ndata:{}\n\n: keep-alive\n\ndata: x\n\n"])
    assert [(e.event, e.comment) for e in evs] == [("error", "HTTP_STATUS/429"), (None, None)]


class TestBounds:
    def test_an_event_over_the_limit_raises_and_lets_go_of_its_bytes(self) -> None:
        from modelway.sse import SSEEventTooLarge

        d = SSEDecoder(max_event_bytes=1000)
        d.feed(b"data: ")
        with pytest.raises(SSEEventTooLarge, match="larger than 1000 bytes"):
            for _ in range(20):
                d.feed(b"x" * 100)  # one line, no end yet
        assert d._parts == [] and d._pending == 0

    def test_many_data_lines_count_towards_one_event(self) -> None:
        from modelway.sse import SSEEventTooLarge

        d = SSEDecoder(max_event_bytes=1000)
        assert d.feed(b"data: a\n\n") == [SSEEvent("a")]  # each event is counted on its own
        with pytest.raises(SSEEventTooLarge):
            d.feed((b"data: " + b"y" * 90 + b"\n") * 20)

    def test_a_long_line_is_kept_in_pieces_and_joined_once(self) -> None:
        d = SSEDecoder()
        d.feed(b"data: ")
        for _ in range(1000):
            assert d.feed(b"z" * 1000) == []
        assert len(d._parts) == 1001 and d._pending == 1_000_006  # no re-joining on every read
        assert d.feed(b"\n\n") == [SSEEvent("z" * 1_000_000)]


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        (b":HTTP_STATUS/400\n", SSEEvent("x", comment="HTTP_STATUS/400")),
        (b"event: error\n", SSEEvent("x", event="error")),
        (b"id: 7\n", SSEEvent("x", id="7")),
        (b"retry: 100\n", SSEEvent("x", retry=100)),
        (b"data: a\n", SSEEvent("a\nx")),
        (b"data:\n", SSEEvent("\nx")),
    ],
)
def test_a_field_read_before_rides_on_the_next_data_line(before: bytes, expected: SSEEvent) -> None:
    """A ``data:`` line and its blank line in one read are a whole event only when nothing of it came before."""
    d = SSEDecoder()
    assert d.feed(before) == []
    assert d.feed(b"data: x\n\ndata:y\n\n") == [expected, SSEEvent("y")]


def test_data_lines_with_and_without_their_space() -> None:
    raw = b"data: a\n\ndata:b\n\ndata:  c\n\ndata:\n\ndata: \n\ndata\n\n"
    expected = [SSEEvent("a"), SSEEvent("b"), SSEEvent(" c"), SSEEvent(""), SSEEvent(""), SSEEvent("")]
    assert decode_all([raw]) == expected
    assert decode_all(split_every(raw, 1)) == expected
