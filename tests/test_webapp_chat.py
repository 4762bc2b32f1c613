"""The chat's rules on their own (webapp.chat has no I/O): a fake clock, no sockets."""

from __future__ import annotations

import pytest

from webapp import chat as rules
from webapp.chat import Chat, Rejected


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def chat(clock: Clock) -> Chat:
    return Chat(clock=clock, wall=lambda: 1_700_000_000.5)


def code_of(fn, *args) -> str:
    with pytest.raises(Rejected) as info:
        fn(*args)
    return info.value.code


@pytest.mark.parametrize("nick", ["a", "Zoë", "山田", "a.b_c-d e", "n" * 24, "  padded  "])
def test_good_nicknames(nick):
    assert rules.valid_nick(nick) == nick.strip()


@pytest.mark.parametrize("nick", ["", "   ", "n" * 25, "<b>", "a\nb", "tab\there", "x\u202ey", None, 5, ["a"]])
def test_bad_nicknames(nick):
    assert code_of(rules.valid_nick, nick) == "bad_nick"


@pytest.mark.parametrize("room,expect", [("lobby", "lobby"), ("Lobby", "lobby"), ("a-b_c9", "a-b_c9"),
                                         ("r" * 32, "r" * 32)])
def test_good_rooms(room, expect):
    assert rules.valid_room(room) == expect


@pytest.mark.parametrize("room", ["", "-lead", "r" * 33, "with space", "é", "../etc", "a/b", None, {}])
def test_bad_rooms(room):
    assert code_of(rules.valid_room, room) == "bad_room"


def test_message_size_is_counted_in_utf8_bytes():
    assert rules.valid_text("x" * 4096) == "x" * 4096
    assert code_of(rules.valid_text, "x" * 4097) == "too_long"
    assert code_of(rules.valid_text, "€" * 1366) == "too_long"  # 4098 bytes, 1366 characters
    assert rules.valid_text({"text": "hi"}) == "hi"
    for bad in ("", "  ", None, 3, {"text": 3}, b"bytes"):
        assert code_of(rules.valid_text, bad) == "bad_message"


def test_join_message_history_and_leave(chat):
    chat.connect("a")
    chat.connect("b")
    room, left = chat.join("a", "Lobby", "alice")
    assert (room.name, left) == ("lobby", None)
    room, msg = chat.message("a", {"text": "hello"})
    assert msg == {"id": 1, "room": "lobby", "nick": "alice", "text": "hello", "ts": 1_700_000_000_500}
    room, _ = chat.join("b", "lobby", "bob")
    assert list(room.history) == [msg] and room.member_list() == ["alice", "bob"]
    other, left = chat.join("a", "other", "alice")
    assert left is room and room.member_list() == ["bob"] and other.member_list() == ["alice"]
    assert chat.disconnect("b") is room and room.member_list() == []
    assert code_of(chat.message, "b", "gone") == "not_connected"


def test_history_keeps_the_last_100(chat, clock):
    chat.connect("a")
    chat.join("a", "r", "alice")
    for n in range(130):
        clock.now += 1  # stay within the rate limit
        chat.message("a", f"m{n}")
    texts = [m["text"] for m in chat.rooms["r"].history]
    assert texts == [f"m{n}" for n in range(30, 130)]


def test_rate_limit_allows_a_burst_then_the_sustained_rate(chat, clock):
    chat.connect("a")
    chat.join("a", "r", "alice")  # spends one token
    sent = 0
    while True:
        try:
            chat.message("a", "x")
            sent += 1
        except Rejected as exc:
            assert exc.code == "rate_limited"
            break
    assert sent == rules.RATE_BURST - 1
    clock.now += 1 / rules.RATE_PER_SECOND
    chat.message("a", "refilled")
    assert code_of(chat.message, "a", "x") == "rate_limited"


def test_flood_errors_are_reported_at_most_once_per_second(chat, clock):
    chat.connect("a")
    flood = Rejected("rate_limited", "slow down")
    assert chat.should_report("a", flood)
    assert not chat.should_report("a", flood)
    assert chat.should_report("a", Rejected("too_long", "big"))  # other errors always
    clock.now += rules.ERROR_EVERY
    assert chat.should_report("a", flood)


def test_typing_notices_are_throttled_and_stops_follow_starts(chat, clock):
    chat.connect("a")
    assert chat.typing("a", None) is None  # not in a room
    chat.join("a", "r", "alice")
    assert chat.typing("a", {"typing": False}) is None  # no start to stop
    assert chat.typing("a", None)[1] == {"room": "r", "nick": "alice", "typing": True}
    assert chat.typing("a", {"typing": True}) is None  # too soon
    assert chat.typing("a", {"typing": False})[1]["typing"] is False
    assert chat.typing("a", {"typing": False}) is None
    clock.now += rules.TYPING_EVERY
    assert chat.typing("a", {})[1]["typing"] is True


def test_rooms_are_bounded_and_empty_ones_are_evicted_first(chat, monkeypatch):
    monkeypatch.setattr(rules, "MAX_ROOMS", 3)
    for sid in "abcd":
        chat.connect(sid)
    chat.join("a", "one", "a")
    chat.join("b", "two", "b")
    chat.join("c", "three", "c")
    assert code_of(chat.join, "d", "four", "d") == "too_many_rooms"
    chat.leave("b")
    chat.join("d", "four", "d")
    assert set(chat.rooms) == {"one", "three", "four"}
    assert [r["name"] for r in chat.room_list()] == ["four", "three", "one"]


def test_a_refused_join_leaves_the_client_where_it_was(chat, monkeypatch):
    monkeypatch.setattr(rules, "MAX_ROOMS", 1)
    chat.connect("a")
    room, _ = chat.join("a", "only", "alice")
    assert code_of(chat.join, "a", "another", "alice") == "too_many_rooms"
    assert chat.clients["a"].room == "only" and room.member_list() == ["alice"]


def test_two_tabs_with_one_nickname_are_one_member_until_both_leave(chat):
    for sid in ("tab1", "tab2", "b"):
        chat.connect(sid)
    chat.join("tab1", "r", "alice")
    chat.join("b", "r", "bob")
    room, _ = chat.join("tab2", "r", "alice")
    assert room.member_list() == ["alice", "bob"]
    assert chat.room_list() == [{"name": "r", "members": 2}]
    chat.disconnect("tab1")
    assert room.member_list() == ["alice", "bob"]  # the other tab is still there
    chat.disconnect("tab2")
    assert room.member_list() == ["bob"]
