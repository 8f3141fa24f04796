"""How a command's output becomes events: line caps, cut markers, the per-command log cap.

The recorder is fed text in chunks as the transports read it (64 KiB at a time);
these tests feed it directly, with chunk boundaries where they hurt.
"""

from __future__ import annotations

from backend.events import CommandFinished, CommandOutput, Event
from backend.transport.base import (
    MAX_LINE_CHARS,
    MAX_LOGGED_CHARS,
    CommandRecorder,
    command_line,
    cut_marker,
)


def recorder(events: list[Event], seen: list[str] | None = None) -> CommandRecorder:
    on_line = None if seen is None else (lambda stream, line: seen.append(line))
    return CommandRecorder("h", ["cmd"], events.append, "local", on_line)


def outputs(events: list[Event]) -> list[str]:
    return [e.line for e in events if isinstance(e, CommandOutput)]


def test_lines_split_across_chunks_are_joined() -> None:
    events: list[Event] = []
    rec = recorder(events)
    for chunk in ["ab", "c\nd", "", "e\n\nf"]:
        rec.feed("stdout", chunk)
    result = rec.finish(0)
    assert outputs(events) == ["abc", "de", "", "f"]
    assert result.stdout == "abc\nde\n\nf" and not result.truncated


def test_a_long_line_is_cut_and_says_how_much() -> None:
    events: list[Event] = []
    seen: list[str] = []
    rec = recorder(events, seen)
    chunk = "a" * 65536
    for _ in range(50):  # one 3.2 MB line in 64 KiB reads, then a short one
        rec.feed("stdout", chunk)
    rec.feed("stdout", "\nshort\n")
    rec.finish(0)
    cut = 50 * 65536 - MAX_LINE_CHARS
    expected = "a" * MAX_LINE_CHARS + cut_marker(cut)
    assert outputs(events) == [expected, "short"]
    assert seen == [expected, "short"]  # on_line sees the capped line too
    finished = next(e for e in events if isinstance(e, CommandFinished))
    assert finished.stdout_tail == [expected, "short"]
    assert cut_marker(cut) == f"…[cut {cut} chars]"


def test_an_unterminated_long_last_line_is_cut_at_the_end() -> None:
    events: list[Event] = []
    rec = recorder(events)
    rec.feed("stderr", "b" * (MAX_LINE_CHARS + 5))
    rec.finish(1)
    assert outputs(events) == ["b" * MAX_LINE_CHARS + cut_marker(5)]


def test_a_line_of_exactly_the_cap_is_not_cut() -> None:
    events: list[Event] = []
    rec = recorder(events)
    rec.feed("stdout", "c" * (MAX_LINE_CHARS - 1))
    rec.feed("stdout", "c\n")
    rec.finish(0)
    assert outputs(events) == ["c" * MAX_LINE_CHARS]


def test_the_log_keeps_a_bounded_amount_per_command_and_says_what_it_left_out() -> None:
    events: list[Event] = []
    rec = recorder(events)
    line = "x" * (MAX_LINE_CHARS - 1)
    total = MAX_LOGGED_CHARS // len(line) + 50
    rec.feed("stdout", (line + "\n") * total)
    rec.finish(0)
    lines = outputs(events)
    logged = lines[:-1]
    assert sum(len(text) for text in logged) <= MAX_LOGGED_CHARS + MAX_LINE_CHARS
    left_out = total - len(logged)
    assert left_out > 0
    assert lines[-1] == f"…[{left_out} more lines ({left_out * len(line)} chars) not logged]"


def test_command_line_quotes_the_program_name() -> None:
    assert command_line(["if"]) == "'if'"
    assert command_line(["A=b", "c"]) == "'A=b' c"
    assert command_line(["qemu system", "a b"]) == "'qemu system' 'a b'"
    assert command_line(["printf", "%s", "x"]) == "'printf' %s x"
