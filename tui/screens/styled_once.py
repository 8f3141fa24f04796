"""Dialogs styled once, when they mount, not again when they first show."""

from __future__ import annotations

from textual import events
from textual.screen import Screen


class StyledOnce(Screen):  # type: ignore[type-arg]
    """A screen whose first showing does not style its widgets a second time.

    Textual styles each widget as it mounts, and then ``push_screen`` sends the new
    screen a ``ScreenResume`` asking to style all of them again (its ``refresh_styles``
    is True there: textual/app.py, ``push_screen``, Textual 8.2.8). Nothing has changed
    in between (compose and mount run first, in the same tick), so for the first
    showing that second pass is skipped: about half the CSS matching of opening the
    palette or a dialog. A later showing (help is kept installed) restyles as before:
    the theme may have changed meanwhile.

    Textual calls the ``_on_screen_resume`` of each class in the screen's MRO, this one
    before ``Screen._on_screen_resume`` (textual/screen.py line 1465, Textual 8.2.8),
    which does the restyle: this one only tells it not to, the first time (no super
    call: that would run Textual's twice). There is no public way to ask for it.
    """

    _shown_once = False

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        if not self._shown_once and self.is_mounted:
            event.refresh_styles = False
        self._shown_once = True
