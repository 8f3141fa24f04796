"""A stylesheet that keeps what it parsed for each theme.

On every theme change Textual parses every stylesheet again, its own widgets'
DEFAULT_CSS included: ``Stylesheet.set_variables`` empties the parse cache and
``Stylesheet.reparse`` parses each source into a fresh stylesheet with an empty
cache of its own (textual/css/stylesheet.py, Textual 8.2). The sources stay the same
from theme to theme; only the variables put into them change. So the rules parsed
are kept per set of variables, and so are the text styles of widgets' markup
(``[$text-muted]``, which Textual parses again too: 72 of them on each ``t``). A theme
seen before takes them from its caches, and :meth:`ThemeStylesheet.prewarm` parses
ahead, one source per step for the app to run in idle time: the other themes'
stylesheets, and the DEFAULT_CSS of the widget classes not on screen yet (the
palette's, a dialog's, a toast's), which Textual would otherwise parse in the frame of
the key that first opens one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from inspect import getfile
from typing import NamedTuple

from textual.cache import LRUCache
from textual.css.model import RuleSet
from textual.css.stylesheet import CssSource, Stylesheet
from textual.css.types import CSSLocation
from textual.dom import DOMNode
from textual.geometry import Region
from textual.style import Style
from textual.widget import Widget

CACHE_SIZE = 1024
"""Parsed sources kept per theme: more than the console has (a few dozen), so that a
parse of them all in order never evicts the ones it is about to need."""

STYLE_CACHE_SIZE = 4096
"""Parsed text styles kept per theme: Textual's own cache size."""

ParseCache = LRUCache[tuple[object, ...], list[RuleSet]]
StyleCache = LRUCache[str, Style]


class ThemeCaches(NamedTuple):
    """What is parsed for one set of variables (one theme)."""

    rules: ParseCache
    """Each stylesheet source's rules."""
    styles: StyleCache
    """The text styles of widgets' markup (``[$accent]``)."""


Source = tuple[CSSLocation, CssSource]


def default_css_sources(classes: Iterable[type[DOMNode]]) -> list[Source]:
    """The DEFAULT_CSS of ``classes`` (and their bases), as each would add it mounted.

    As ``DOMNode._get_default_css`` makes them for an instance (textual/dom.py): a
    class's own CSS and its bases', each with its place in the class's bases.
    """
    sources: dict[tuple[CSSLocation, int, str], Source] = {}
    for cls in classes:
        for tie_breaker, base in enumerate(cls._css_bases(cls)):
            css: str = base.__dict__.get("DEFAULT_CSS", "")
            if not css:
                continue
            try:
                location: CSSLocation = (getfile(base), f"{base.__name__}.DEFAULT_CSS")
            except (TypeError, OSError):
                location = ("", f"{base.__name__}.DEFAULT_CSS")
            scope = base._css_type_name if base.__dict__.get("SCOPED_CSS", True) else ""
            source = CssSource(css, True, -tie_breaker, scope)
            sources[(location, -tie_breaker, scope)] = (location, source)
    return list(sources.values())


class ThemeStylesheet(Stylesheet):
    """A :class:`Stylesheet` with its parse caches kept per set of variables (per theme)."""

    def __init__(self, *, variables: dict[str, str] | None = None) -> None:
        super().__init__(variables=variables)
        self._per_variables: dict[tuple[tuple[str, str], ...], ThemeCaches] = {}
        self._parse_cache, self._style_parse_cache = self._caches_for(self._variables)
        self._gathering: dict[Widget, tuple[bool, bool]] | None = None

    def _caches_for(self, variables: dict[str, str]) -> ThemeCaches:
        key = tuple(sorted(variables.items()))
        caches = self._per_variables.get(key)
        if caches is None:
            caches = ThemeCaches(LRUCache(CACHE_SIZE), LRUCache(STYLE_CACHE_SIZE))
            self._per_variables[key] = caches
        return caches

    def set_variables(self, variables: dict[str, str]) -> None:
        # The base class empties the caches it holds: give it throwaway ones.
        self._parse_cache, self._style_parse_cache = LRUCache(1), LRUCache(1)
        super().set_variables(variables)
        self._parse_cache, self._style_parse_cache = self._caches_for(variables)

    def reparse(self) -> None:
        """Parse the sources with the current variables, from this theme's cache.

        Textual parses into a fresh stylesheet so that a source with an error leaves
        this one as it was; :meth:`parse` does too (it sets the rules only once every
        source parsed), and it keeps the cache.
        """
        self.parse()

    def update_nodes(self, nodes: Iterable[DOMNode], animate: bool = False) -> None:
        """Textual's, with each widget refreshed once, after all its rules are set.

        Each style property set refreshes its widget, and one that children inherit
        (a colour, a text style) every widget under it as well: a theme change made
        about 440 refreshes for the 16 widgets of the main screen, each marking
        regions dirty and emptying caches, a third of the time the restyle took. Here
        they are gathered while the rules apply and done once per widget after, with
        every flag any of them asked for (textual/css/styles.py ``Styles.refresh``,
        Textual 8.2).
        """
        if self._gathering is not None:  # within an update already: it gathers
            super().update_nodes(nodes, animate)
            return
        asked = self._gathering = {}
        real = Widget.refresh

        def gather(
            widget: Widget,
            *regions: Region,
            repaint: bool = True,
            layout: bool = False,
            recompose: bool = False,
        ) -> Widget:
            if regions or recompose:
                return real(widget, *regions, repaint=repaint, layout=layout, recompose=recompose)
            was_repaint, was_layout = asked.get(widget, (False, False))
            asked[widget] = (was_repaint or repaint, was_layout or layout)
            return widget

        Widget.refresh = gather  # type: ignore[assignment,method-assign]
        try:
            super().update_nodes(nodes, animate)
        finally:
            Widget.refresh = real  # type: ignore[method-assign]
            self._gathering = None
        for widget, (repaint, layout) in asked.items():
            widget.refresh(repaint=repaint, layout=layout)

    def cached_sources(self, variables: dict[str, str]) -> int:
        """How many sources are parsed for ``variables`` (for tests and benchmarks)."""
        return len(self._caches_for(variables).rules)

    def prewarm(
        self, variables: dict[str, str], more: list[Source] | None = None
    ) -> Iterator[None]:
        """Parse every source, and ``more``, for ``variables`` into their cache, one
        source per step (a source parsed already costs a look-up)."""
        cache = self._caches_for(variables).rules
        scratch = Stylesheet(variables=variables)
        scratch._parse_cache = cache
        for read_from, (css, is_default, tie_breaker, scope) in [
            *self.source.items(),
            *(more or []),
        ]:
            if (css, read_from, is_default, tie_breaker, scope) in cache:
                continue
            # An error in a source is reported when it is used, as Textual does.
            with contextlib.suppress(Exception):
                scratch._parse_rules(css, read_from, is_default, tie_breaker, scope)
            yield
