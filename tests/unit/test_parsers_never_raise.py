"""Every parser, fed every real capture under tests/data mangled the ways copy and paste and
other terminals mangle text, never raises on a line it does not know.

The captures are the corpus (each parser meets the other tools' outputs too, which is what
a wrong KIND or a pasted forum post gives it). The mutations are deterministic: tabs to
spaces and back, CRLF endings, trailing blanks, every line cut at several points, lines
repeated and dropped, and bytes that are not text. Whether the values are right is each
parser's own test's business. Two contracts are checked here:

- Line parsers (probes, ``xl -v migrate``, HMP ``info migrate``: what a live session and
  ``miglab import`` read) never raise: they skip and count what they do not know.
- Whole-output parsers whose answer gates a safety rule (``xl list`` decides whether the
  guest runs somewhere) may refuse output that is not their tool's, but only with a
  :class:`ParseError` naming the line, which the driver turns into a message naming the
  host and the command: never any other exception. (ietd.conf is not here: it is a config
  file miglab edits, where an unreadable line stops the edit rather than being dropped.)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.drivers import (
    ParseError,
    parse_hmp,
    parse_iet,
    parse_iscsiadm,
    parse_targetcli,
    parse_tgt,
    parse_xl,
    parse_xm,
)
from backend.probes import PROBES, new_parser

DATA = Path(__file__).resolve().parents[1] / "data"
# Captures are small; a few big generated ones would only slow the test down.
MAX_CAPTURE_BYTES = 64 * 1024


def _captures() -> list[Path]:
    found = []
    for path in sorted(DATA.rglob("*")):
        if not path.is_file() or path.suffix in {".py", ".sh", ".toml", ".jsonl", ".gz"}:
            continue
        if path.name == "README.md" or path.stat().st_size > MAX_CAPTURE_BYTES:
            continue
        found.append(path)
    return found


CAPTURES = _captures()


def mangled(text: str, seed: int) -> Iterator[str]:
    """The text as it was, then as copy and paste and other terminals leave it."""
    rng = random.Random(seed)
    lines = text.splitlines()
    yield text
    yield text.replace("\t", "    ")
    yield text.replace("    ", "\t")
    yield "\r\n".join(lines)
    yield "\n".join(line + "  \t" for line in lines)
    yield "\n".join("   " + line for line in lines)
    for cut in (1, 3, 7, 0.5):
        yield "\n".join(
            line[: int(len(line) * cut) if isinstance(cut, float) else cut] for line in lines
        )
    shuffled = lines[:]
    rng.shuffle(shuffled)
    yield "\n".join(shuffled)
    yield "\n".join(line for i, line in enumerate(lines) if i % 3)
    yield "\n".join(line for line in lines for _ in (0, 1))
    noise = bytes(rng.randrange(256) for _ in range(200)).decode("latin-1")
    yield "\n".join(noise[i : i + 40] for i in range(0, 200, 40)) + "\n" + text
    yield "".join(ch if rng.random() > 0.05 else "\x00" for ch in text)


# Whole-text parsers: the driver side (tools answering once per command).
TEXT_PARSERS: dict[str, Callable[[str], Any]] = {
    "xl list": parse_xl.parse_xl_list,
    "xl list -l": parse_xl.parse_xl_list_long,
    "xl info": parse_xl.parse_xl_info,
    "xl migrate": parse_xl.parse_xl_migrate,
    "xm list": parse_xm.parse_xm_list,
    "xm list -l": parse_xm.parse_xm_list_long,
    "xm info": parse_xm.parse_xm_info,
    "xm migrate": parse_xm.parse_xm_migrate,
    "iscsiadm node": parse_iscsiadm.parse_node_list,
    "iscsiadm discovery": parse_iscsiadm.parse_discovery,
    "iscsiadm session": parse_iscsiadm.parse_session_list,
    "iscsiadm session -P3": parse_iscsiadm.parse_session_tree,
    "iscsiadm login": parse_iscsiadm.parse_login_output,
    "iscsi-ls": parse_iscsiadm.parse_iscsi_ls,
    "tgtadm show target": parse_tgt.parse_show_target,
    "tgtadm show account": parse_tgt.parse_show_account,
    "tgtadm show conn": parse_tgt.parse_show_conn,
    "tgtadm target params": parse_tgt.parse_target_params,
    "targetcli ls": parse_targetcli.parse_targetcli_ls,
    "/proc/net/iet/volume": parse_iet.read_proc_volume,
    "/proc/net/iet/session": parse_iet.read_proc_session,
    "ietadm params": parse_iet.parse_ietadm_params,
    "ietadm accounts": parse_iet.parse_ietadm_accounts,
    "ietadm version": parse_iet.parse_ietadm_version,
}


def _line_parsers() -> dict[str, Callable[[], Any]]:
    parsers: dict[str, Callable[[], Any]] = {
        f"probe {kind}": (lambda kind=kind: new_parser(kind, "guest", lambda: 1000.0))
        for kind in PROBES
    }
    parsers["xl -v migrate (live)"] = parse_xl.XlMigrateParser
    parsers["xm migrate (live)"] = parse_xm.XmMigrateParser
    parsers["HMP info migrate"] = parse_hmp.HmpInfoMigrateParser
    return parsers


LINE_PARSERS = _line_parsers()


def test_the_corpus_is_there() -> None:
    # Guards against a moved data folder turning every test below into a no-op.
    assert len(CAPTURES) >= 60, [p.name for p in CAPTURES]


@pytest.mark.parametrize("name", sorted(TEXT_PARSERS))
def test_text_parsers_never_raise_on_any_capture(name: str) -> None:
    parse = TEXT_PARSERS[name]
    for seed, path in enumerate(CAPTURES):
        text = path.read_text(encoding="utf-8", errors="replace")
        for variant, mangled_text in enumerate(mangled(text, seed)):
            try:
                parse(mangled_text)
            except ParseError:
                continue  # "this is not my tool's output", said with the line: allowed
            except Exception as error:
                pytest.fail(f"{name} raised {error!r} on {path.name}, variant {variant}")


@pytest.mark.parametrize("name", sorted(LINE_PARSERS))
def test_line_parsers_never_raise_on_any_capture(name: str) -> None:
    for seed, path in enumerate(CAPTURES):
        text = path.read_text(encoding="utf-8", errors="replace")
        for variant, mangled_text in enumerate(mangled(text, seed)):
            parser = LINE_PARSERS[name]()
            for number, line in enumerate(mangled_text.splitlines(), 1):
                try:
                    parser.feed(line)
                except Exception as error:
                    pytest.fail(
                        f"{name} raised {error!r} on {path.name} line {number}, "
                        f"variant {variant}: {line!r}"
                    )
