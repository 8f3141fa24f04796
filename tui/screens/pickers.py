"""Small choosers: which host to boot on, which scenario to run, which log to open."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tui.backend_api import ScenarioInfo
from tui.screens.styled_once import StyledOnce
from tui.widgets.safe_text import markup, plain

_CSS = """
{name} {{
    align: center middle;
}}
{name} > Vertical {{
    width: 80%;
    max-width: 90;
    height: auto;
    max-height: 80%;
    padding: 0 1;
}}
{name} OptionList {{
    height: auto;
    max-height: 16;
}}
{name} #hint {{
    margin-top: 1;
}}
"""


class Choice(ModalScreen[str | None], StyledOnce):
    """Pick one option; enter chooses, escape dismisses with None."""

    DEFAULT_CSS = _CSS.format(name="Choice")
    BINDINGS: ClassVar = [Binding("escape", "dismiss_none", "cancel", show=False)]

    def __init__(
        self,
        title: str,
        options: Sequence[tuple[str, str | Content]],
        *,
        hint: str = "enter chooses · escape cancels",
        highlighted: str | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.options = list(options)
        self.hint = hint
        self.highlighted = highlighted

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = plain(self.title_text)
            # A prompt given as a str is a host's or a file's text: never markup.
            prompts = [(i, p if isinstance(p, Content) else plain(p)) for i, p in self.options]
            yield OptionList(*[Option(prompt, id=ident) for ident, prompt in prompts])
            yield Static(markup("[$text-muted]$hint[/]", hint=self.hint), id="hint")

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        if self.highlighted is not None:
            for index, (ident, _) in enumerate(self.options):
                if ident == self.highlighted:
                    option_list.highlighted = index
        option_list.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


def scenario_choice(scenarios: Sequence[ScenarioInfo]) -> Choice:
    options: list[tuple[str, str | Content]] = []
    for scenario in scenarios:  # scenario files are the user's: their text is shown as text
        text = markup("[b]$id[/]  $title", id=scenario.id, title=scenario.title)
        if scenario.description:
            text += markup("\n  [$text-muted]$description[/]", description=scenario.description)
        options.append((scenario.id, text))
    return Choice("Run a scenario", options)


class OpenLog(ModalScreen[str | None], StyledOnce):
    """Ask for a session log to replay."""

    DEFAULT_CSS = _CSS.format(name="OpenLog")
    BINDINGS: ClassVar = [Binding("escape", "dismiss_none", "cancel", show=False)]

    def __init__(self, suggestion: str = "") -> None:
        super().__init__()
        self.suggestion = suggestion

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Replay a session log"
            yield Input(value=self.suggestion, placeholder="path/to/session.jsonl", id="path")
            yield Static("[$text-muted]enter opens · escape cancels[/]", id="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        self.dismiss(value or None)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
