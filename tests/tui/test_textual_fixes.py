"""The console's fix to Textual's Strip (tui/textual_fixes.py): a drawn line that is cut
at its own end or cropped to its own length no longer refers to itself, so it is freed
when it is replaced, not left for the garbage collector's full passes."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from tui import textual_fixes
from tui.textual_fixes import _textual_crop_extend, _textual_divide

RED = Style(color="red")


def line(text: str = "hello world") -> Strip:
    return Strip([Segment(text[:5], RED), Segment(text[5:])])


@pytest.fixture
def collector_quiet() -> Iterator[None]:
    """Only the test's own garbage in the collector's count."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def cycles_left_by(use: Callable[[Strip], object]) -> int:
    """Unreachable objects a collection finds after 100 lines were used and dropped."""
    gc.collect()
    for n in range(100):
        use(line(f"line {n:03d}   "))
    return gc.collect()


WHOLE = {
    "divide": lambda strip: strip.divide([strip.cell_length]),
    "crop_extend": lambda strip: strip.crop_extend(0, strip.cell_length, None),
}
TEXTUALS = {"divide": _textual_divide, "crop_extend": _textual_crop_extend}


@pytest.mark.parametrize("method", WHOLE)
def test_a_line_used_whole_leaves_no_reference_cycle(collector_quiet: None, method: str) -> None:
    textual_fixes.install()
    assert cycles_left_by(WHOLE[method]) == 0


@pytest.mark.parametrize("method", WHOLE)
def test_without_the_fix_textual_leaves_one_cycle_per_line(
    collector_quiet: None, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    # What the fix is for: if Textual stops caching a strip in itself, this fails and
    # the fix can go.
    monkeypatch.setattr(Strip, method, TEXTUALS[method])
    assert cycles_left_by(WHOLE[method]) >= 100


def test_the_fixed_methods_give_what_textuals_give() -> None:
    textual_fixes.install()
    strip = line()
    assert strip.divide([11]) == [strip]
    assert [piece.text for piece in strip.divide([3, 7, 11])] == ["hel", "lo w", "orld"]
    assert strip.divide([3, 7, 11]) is strip.divide([3, 7, 11])  # still cached
    assert [piece.text for piece in strip.divide([4, 40])] == ["hell"]
    assert strip.crop_extend(0, 11, None) is strip
    longer = strip.crop_extend(2, 14, RED)
    assert longer.text == "llo world   " and longer.cell_length == 12
    assert strip.crop_extend(2, 14, RED) is longer  # still cached
    assert strip.crop_extend(0, 5, None).text == "hello"
