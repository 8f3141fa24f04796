"""A user's TOML file (lab.toml, a scenario, a campaign): reading it, finding the
line each key is on, and wording what is wrong with it.

Every problem becomes a :class:`ConfigError` that names the file, the line and the
dotted key: ``lab.toml:14: hosts.xen1.adress: unknown key; ...``. ``tomllib`` gives
values but no positions, so :class:`KeyLines` scans the text for them; pydantic's
errors become sentences in :func:`describe_error`. The models of each file live with
their loaders (:mod:`backend.config`, :mod:`backend.experiments.scenarios`,
:mod:`backend.experiments.campaign`); this module knows none of them.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import sys
import types
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from backend.inputs import InputError, read_input, too_deep, too_long_number

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "KeyLines",
    "Loc",
    "describe_error",
    "did_you_mean",
    "dotted_key",
    "load_toml_file",
    "toml_syntax_error",
]

Loc = tuple[str | int, ...]
"""A key path in a file: ("hosts", "xen1", "port"); list elements by index."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # a TOML key that needs no quotes


# --------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """A problem with a user's TOML file (lab.toml, a scenario, a campaign), located as
    precisely as we can.

    ``str(err)`` is one paragraph: ``lab.toml:14: hosts.xen1.adress: unknown key; ...``.
    ``err.errors`` lists the individual problems (just ``(err,)`` here; several for
    :class:`ConfigErrors`), so a caller can always print ``for e in err.errors``.
    """

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        super().__init__(file, line, key, message)
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        self.errors: tuple[ConfigError, ...] = (self,)

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where = f"{where}:{self.line}"
        parts = [p for p in (where, self.key, self.message) if p]
        return ": ".join(parts)


class ConfigErrors(ConfigError):
    """Several problems found in one pass; ``str()`` puts each on its own line.

    Its own ``file``/``line``/``key``/``message`` are those of the first problem.
    """

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        if not errors:
            raise ValueError("ConfigErrors needs at least one error")
        first = errors[0]
        super().__init__(first.file, first.line, first.key, first.message)
        self.args = (tuple(errors),)  # so that pickling calls ConfigErrors(errors)
        self.errors = tuple(errors)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


# --------------------------------------------------------------------------- reading


T = TypeVar("T")


def load_toml_file(
    path: str | os.PathLike[str],
    what: str,
    limit: int,
    parse: Callable[[str, str], T],
    *,
    missing: str,
) -> tuple[T, bytes]:
    """Read a user's TOML file (lab.toml, a scenario, a campaign) and ``parse(text, file)``
    it: (what it gave, the file's bytes). Blocking. Every way the file can be wrong is a
    :class:`ConfigError` naming the file (and line): missing, not a regular file, too big,
    not UTF-8, nested too deep, a number past Python's 4300-digit limit."""
    file = os.fspath(path)
    try:  # a regular file of bounded size: never /dev/zero or a FIFO
        raw = read_input(file, what, limit)
    except FileNotFoundError:
        raise ConfigError(file, None, "", missing) from None
    except InputError as exc:
        raise ConfigError(file, None, "", exc.reason) from None
    except OSError as exc:
        raise ConfigError(file, None, "", f"cannot read the file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(file, line, "", "the file is not UTF-8 text") from None
    try:
        return parse(text, file), raw
    except RecursionError:
        raise _input_problem(too_deep(file, text)) from None
    except ValueError as exc:  # tomllib's int() past Python's 4300-digit limit
        if isinstance(exc, ValidationError) or (long := too_long_number(file, text)) is None:
            raise
        raise _input_problem(long) from None


def _input_problem(error: InputError) -> ConfigError:
    return ConfigError(error.path, error.line, "", error.reason)


_SYNTAX_POSITION = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)\s*$")


def toml_syntax_error(exc: tomllib.TOMLDecodeError, text: str, file: str) -> ConfigError:
    """tomllib's syntax error located and worded: a key defined twice is named."""
    message = str(exc)
    line: int | None = None
    column: int | None = None
    match = _SYNTAX_POSITION.search(message)
    if match is not None:
        message = message[: match.start()]
        if match.group(1):
            line, column = int(match.group(1)), int(match.group(2))
        else:
            line = max(1, len(text.splitlines()))
    # "Cannot overwrite a value" does not say which key: the scanner knows.
    if line is not None and message.startswith(("Cannot overwrite", "Cannot declare")):
        lines = KeyLines(text)
        for path, dup_line, first_line in lines.duplicates:
            if dup_line == line:
                return ConfigError(
                    file, line, dotted_key(path), f"defined twice (first on line {first_line})"
                )
        path_on_line = lines.first_key_on_line.get(line)
        if path_on_line is not None:
            return ConfigError(
                file, line, dotted_key(path_on_line), "conflicts with an earlier definition"
            )
    if message == "Illegal character '\\n'":
        message += " (a string that is not closed on its line?)"
    if message:
        message = message[0].lower() + message[1:]
    where = f" (column {column})" if column is not None else ""
    return ConfigError(file, line, "", f"TOML syntax error: {message}{where}")


# --------------------------------------------------------------------------- line scanner


class _ScanError(Exception):
    pass


class KeyLines:
    """Maps dotted key paths to the line that defines them.

    ``tomllib`` gives values but no positions, so this walks the text once and
    notes where each table header, key, inline-table key and array element starts.
    It skims values (strings, arrays, inline tables) without decoding them. It is
    meant for text ``tomllib`` accepted; on anything it does not understand it
    stops and keeps what it found so far, so a lookup degrades to a less precise line.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[Loc, int] = {}
        self.duplicates: list[tuple[Loc, int, int]] = []  # (path, line, first line)
        self.first_key_on_line: dict[int, Loc] = {}
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        self._defined: set[Loc] = set()  # explicitly defined: headers and key = value
        self._array_tables: dict[Loc, int] = {}  # [[path]] -> index of its last element
        try:
            self._document()
        except (_ScanError, IndexError):
            pass

    def line_for(self, loc: Loc) -> int | None:
        """Line of ``loc``, or of its nearest enclosing table when ``loc`` is not in the file."""
        for end in range(len(loc), 0, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None

    # -- helpers

    def _line(self) -> int:
        return bisect_left(self._newlines, self.pos) + 1

    def _record(self, path: Loc, line: int, *, define: bool) -> None:
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], line)
        self.first_key_on_line.setdefault(line, path)
        if define:
            if path in self._defined:
                self.duplicates.append((path, line, self.lines[path]))
            self._defined.add(path)

    def _skip_blank(self, newlines: bool) -> None:
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in " \t" or (newlines and c in "\r\n"):
                self.pos += 1
            elif c == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def _expect(self, token: str) -> None:
        if not self.text.startswith(token, self.pos):
            raise _ScanError(token)
        self.pos += len(token)

    # -- grammar

    def _document(self) -> None:
        table: Loc = ()
        while True:
            self._skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return
            line = self._line()
            if self.text.startswith("[[", self.pos):
                self.pos += 2
                key = self._key()
                self._skip_blank(newlines=False)
                self._expect("]]")
                array = (*self._resolve(key[:-1]), key[-1])
                index = self._array_tables.get(array, -1) + 1
                self._array_tables[array] = index
                table = (*array, index)
                self._record(table, line, define=True)
            elif self.text.startswith("[", self.pos):
                self.pos += 1
                table = self._resolve(self._key())
                self._skip_blank(newlines=False)
                self._expect("]")
                self._record(table, line, define=True)
            else:
                self._key_value(table)
            self._skip_blank(newlines=False)
            if self.pos < len(self.text) and self.text[self.pos] not in "\r\n":
                raise _ScanError("expected the end of the line")

    def _resolve(self, key: Loc) -> Loc:
        # In [a.b] after [[a]], "a" means the last element of the array of tables a.
        out: list[str | int] = []
        for part in key:
            out.append(part)
            index = self._array_tables.get(tuple(out))
            if index is not None:
                out.append(index)
        return tuple(out)

    def _key_value(self, table: Loc) -> None:
        line = self._line()
        path = (*table, *self._key())
        self._skip_blank(newlines=False)
        self._expect("=")
        self._record(path, line, define=True)
        self._value(path)

    def _key(self) -> Loc:
        parts: list[str | int] = [self._simple_key()]
        while True:
            self._skip_blank(newlines=False)
            if not self.text.startswith(".", self.pos):
                return tuple(parts)
            self.pos += 1
            parts.append(self._simple_key())

    def _simple_key(self) -> str:
        self._skip_blank(newlines=False)
        text, start = self.text, self.pos
        if text.startswith('"', start):
            self._basic_string()
            raw = text[start : self.pos]
            try:  # let tomllib decode the escapes, so the key matches the loaded data
                return str(tomllib.loads(f"k = {raw}")["k"])
            except tomllib.TOMLDecodeError:
                return raw[1:-1]
        if text.startswith("'", start):
            self._literal_string()
            return text[start + 1 : self.pos - 1]
        match = _BARE_KEY.match(text, start)
        if match is None:
            raise _ScanError("expected a key")
        self.pos = match.end()
        return match.group()

    def _value(self, path: Loc) -> None:
        self._skip_blank(newlines=False)
        text = self.text
        if text.startswith("{", self.pos):
            self.pos += 1
            while True:
                self._skip_blank(newlines=True)
                if text.startswith("}", self.pos):
                    self.pos += 1
                    return
                line = self._line()
                key = (*path, *self._key())
                self._skip_blank(newlines=False)
                self._expect("=")
                self._record(key, line, define=True)
                self._value(key)
                self._skip_blank(newlines=True)
                if text.startswith(",", self.pos):
                    self.pos += 1
        elif text.startswith("[", self.pos):
            self.pos += 1
            index = 0
            while True:
                self._skip_blank(newlines=True)
                if text.startswith("]", self.pos):
                    self.pos += 1
                    return
                element = (*path, index)
                self._record(element, self._line(), define=False)
                self._value(element)
                self._skip_blank(newlines=True)
                if text.startswith(",", self.pos):
                    self.pos += 1
                index += 1
        elif text.startswith('"""', self.pos):
            self._multiline_string('"""', escapes=True)
        elif text.startswith("'''", self.pos):
            self._multiline_string("'''", escapes=False)
        elif text.startswith('"', self.pos):
            self._basic_string()
        elif text.startswith("'", self.pos):
            self._literal_string()
        else:  # number, boolean, date/time (which may contain one blank)
            start = self.pos
            while self.pos < len(text) and text[self.pos] not in ",]}#\r\n":
                self.pos += 1
            if self.pos == start:
                raise _ScanError("expected a value")

    def _basic_string(self) -> None:
        text = self.text
        self.pos += 1
        while True:
            c = text[self.pos]
            if c == "\\":
                self.pos += 2
            elif c == '"':
                self.pos += 1
                return
            elif c == "\n":
                raise _ScanError("unterminated string")
            else:
                self.pos += 1

    def _literal_string(self) -> None:
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise _ScanError("unterminated string")
        self.pos = end + 1

    def _multiline_string(self, quotes: str, *, escapes: bool) -> None:
        text = self.text
        self.pos += 3
        while True:
            if self.pos >= len(text):
                raise _ScanError("unterminated string")
            if escapes and text[self.pos] == "\\":
                self.pos += 2
            elif text.startswith(quotes, self.pos):
                self.pos += 3
                # Up to two more quote marks are part of the content: """a""""" is 'a""'.
                for _ in range(2):
                    if text.startswith(quotes[0], self.pos):
                        self.pos += 1
                return
            else:
                self.pos += 1


# --------------------------------------------------------------------------- error messages

_SECRET_FIELDS = {"secret", "identity_passphrase"}


def dotted_key(loc: Loc) -> str:
    """("hosts", "xen 1", "port") -> 'hosts."xen 1".port'; list indexes as [i]."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _BARE_KEY.fullmatch(part) else json.dumps(part)  # TOML-quoted
            out += f".{name}" if out else name
    return out


def _show(value: Any, hidden: bool) -> str:
    """A short, safe rendering of a bad value (never of anything under a secret)."""
    if isinstance(value, bool):
        kind, shown = "a boolean", "true" if value else "false"
    elif isinstance(value, int | float):
        shown = repr(value)
        if isinstance(value, float) and not math.isfinite(value):
            shown = {"inf": "inf", "-inf": "-inf"}.get(shown, "nan")  # TOML spelling
        elif len(shown) > 30:  # a 400-digit integer is shown by its size
            shown = f"a number of {len(shown.lstrip('-'))} digits"
        kind = "a number"
    elif isinstance(value, str):
        kind, shown = "a string", repr(value if len(value) <= 60 else value[:57] + "...")
    elif isinstance(value, dict):
        return "a table"
    elif isinstance(value, list):
        return "an array"
    else:
        return "a date/time" if hasattr(value, "isoformat") else type(value).__name__
    return kind if hidden else shown


def describe_error(err: ErrorDetails, root: type[BaseModel]) -> str:
    """pydantic's error as a sentence for a person; ``root`` is the model its location is in
    (an unknown key lists the keys the model there accepts)."""
    kind = err["type"]
    loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    hidden = any(part in _SECRET_FIELDS for part in loc)
    got = _show(err.get("input"), hidden)
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, loc[:-1])
        what = "table" if isinstance(err.get("input"), dict) else "key"
        message = f"unknown {what}"
        if allowed:
            message += f"; expected one of {', '.join(allowed)}"
        return message + did_you_mean(str(loc[-1]), allowed)
    if kind == "missing":
        if len(loc) == 1:
            return f"required table [{loc[0]}] is missing"
        return "required key is missing"
    simple = {
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "an integer",
        "float_type": "a number",
        "float_parsing": "a number",
        "string_type": "a string",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "list_type": "an array [...]",
        "dict_type": "a table",
        "model_type": "a table",
        "model_attributes_type": "a table",
        "path_type": "a path (a string)",
    }
    if kind in simple:
        return f"expected {simple[kind]}, got {got}"
    if kind == "finite_number":
        return f"must be a finite number, got {got}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {got}"
    bounds = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind in bounds:
        words, name = bounds[kind]
        limit = ctx.get(name)
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)  # "at most 3600", not "3600.0"
        return f"must be {words} {limit}, got {got}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"{got} has characters that are not allowed here"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    return err["msg"]


def did_you_mean(word: str, choices: Sequence[str] | Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _allowed_keys(root: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the model at ``loc`` in ``root`` accepts (for "unknown key; expected one of
    ...")."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) in (dict, list):
            current = get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Optional[...] and Annotated[...] down to the type that matters."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation
