"""Themes: TOML palettes, stylesheets with theme variables only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tui.app import THEME_ORDER, THEMES_DIR, ThemeFileError, load_theme, load_themes, stylesheets

TRACE_VARIABLES = {
    "trace-ping", "trace-cpu", "trace-memory", "trace-disk", "trace-build",
    "trace-dirtier", "trace-other", "trace-loss", "trace-window", "trace-axes",
}  # fmt: skip
# A literal colour in CSS: #rgb / #rrggbb, rgb()/hsl(), or a named colour as a value.
LITERAL = re.compile(
    r"#[0-9a-fA-F]{3,8}\b|\b(?:rgb|rgba|hsl|hsla)\(|"
    r":\s*(?:red|green|blue|white|black|yellow|cyan|magenta|gr[ae]y|orange)\b"
)


def test_the_three_themes_load_in_cycling_order() -> None:
    themes = load_themes()
    assert [t.name for t in themes][:3] == list(THEME_ORDER)
    assert {t.dark for t in themes} == {True, False}
    for theme in themes:
        assert TRACE_VARIABLES <= set(theme.variables), theme.name


def test_stylesheets_use_theme_variables_not_literal_colours() -> None:
    sheets = stylesheets()
    assert sheets[0].name == "console.tcss"
    assert {p.name for p in sheets} >= {"dark.tcss", "light.tcss", "high-contrast.tcss"}
    for sheet in sheets:
        css = re.sub(r"/\*.*?\*/", "", sheet.read_text(), flags=re.S)
        assert not LITERAL.search(css), f"{sheet.name}: {LITERAL.search(css)}"
        assert "$" in css


def test_each_theme_stylesheet_is_scoped_to_its_theme() -> None:
    for name in ("dark", "light", "high-contrast"):
        css = re.sub(r"/\*.*?\*/", "", (THEMES_DIR / f"{name}.tcss").read_text(), flags=re.S)
        selectors = [block.split("{")[0] for block in css.split("}") if "{" in block]
        assert selectors and all(f"-theme-miglab-{name}" in s for s in selectors)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('name = "x"\nprimary = "#fff"\ncolour = "#000"\n', "unknown key 'colour'"),
        ('name = "x"\nprimary = 3\n', "primary must be a str"),
        ('primary = "#fff"\n', "needs at least name and primary"),
        ('name = "x"\nprimary = "#fff"\n[variables]\ntrace-ping = 1\n', "must be a string"),
        ('name = "x\n', "x.toml"),
    ],
)
def test_a_bad_theme_file_is_named_with_its_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "x.toml"
    path.write_text(content)
    with pytest.raises(ThemeFileError, match=re.escape(message)) as raised:
        load_theme(path)
    assert str(path) in str(raised.value)
