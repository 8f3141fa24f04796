"""The session log writer when its log cannot be started: an error naming the file, no file."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.session import SessionLogWriteError, SessionLogWriter, make_header


async def test_a_log_under_a_file_is_refused_naming_it_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log's directory should be\n")
    path = blocker / "sessions" / "s.jsonl"
    with pytest.raises(SessionLogWriteError) as raised:
        await SessionLogWriter.create(path, make_header())
    assert str(raised.value).startswith(f"cannot write the session log {path}: ")
    assert raised.value.filename == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-dir"]


async def test_an_existing_log_is_never_overwritten_nor_removed(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text("precious\n")
    with pytest.raises(FileExistsError):
        await SessionLogWriter.create(path, make_header())
    assert path.read_text() == "precious\n"


async def test_the_end_marker_says_how_the_session_ended(tmp_path: Path) -> None:
    for status in ("ok", "interrupted", "crashed", "failed"):
        path = tmp_path / f"{status}.jsonl"
        writer = await SessionLogWriter.create(path, make_header())
        await writer.close(status)  # type: ignore[arg-type]
        assert path.read_text().splitlines()[-1].endswith(f'"status":"{status}"}}')
