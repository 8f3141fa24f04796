"""The everyday commands every simulated machine has: uname, cat, test, mkdir, rm, sleep...

Only what miglab's drivers and a person poking around by hand use; each behaves and
fails like its GNU coreutils namesake (messages, exit codes).
"""

from __future__ import annotations

import re
import time

from backend.sim.commands.base import Invocation

KERNEL_VERSION = {
    "storage": "#1 SMP Mon Jun 8 21:39:18 BRT 2009",
    "hypervisor": "#1 SMP Debian 3.16.43-2+deb8u2 (2017-06-26)",
    "guest": "#1 SMP Debian 3.16.43-2+deb8u2 (2017-06-26)",
}


async def true(inv: Invocation) -> int:
    return 0


async def false(inv: Invocation) -> int:
    return 1


async def uname(inv: Invocation) -> int:
    fields = {
        "s": "Linux",
        "n": inv.node.name,
        "r": inv.node.kernel,
        "v": KERNEL_VERSION[inv.node.role],
        "m": "x86_64",
    }
    wanted: list[str] = []
    for arg in inv.argv[1:]:
        if arg in ("-a", "--all"):
            wanted = ["s", "n", "r", "v", "m", "o"]
            continue
        if not arg.startswith("-") or len(arg) < 2 or arg.startswith("--"):
            await inv.err(
                f"uname: extra operand '{arg}'\nTry 'uname --help' for more information.\n"
            )
            return 1
        for letter in arg[1:]:
            if letter not in "snrvmo":
                await inv.err(
                    f"uname: invalid option -- '{letter}'\n"
                    "Try 'uname --help' for more information.\n"
                )
                return 1
            wanted.append(letter)
    order = [k for k in "snrvmo" if k in (wanted or ["s"])]
    words = [fields[k] if k != "o" else "GNU/Linux" for k in order]
    await inv.out(" ".join(words) + "\n")
    return 0


async def hostname(inv: Invocation) -> int:
    await inv.out(inv.node.name + "\n")
    return 0


async def echo(inv: Invocation) -> int:
    args = inv.argv[1:]
    newline = True
    if args and args[0] == "-n":
        newline, args = False, args[1:]
    await inv.out(" ".join(args) + ("\n" if newline else ""))
    return 0


async def sleep(inv: Invocation) -> int:
    if len(inv.argv) < 2:
        await inv.err("sleep: missing operand\nTry 'sleep --help' for more information.\n")
        return 1
    try:
        seconds = sum(float(a) for a in inv.argv[1:])
    except ValueError:
        bad = next(a for a in inv.argv[1:] if not _is_number(a))
        await inv.err(
            f"sleep: invalid time interval '{bad}'\nTry 'sleep --help' for more information.\n"
        )
        return 1
    await inv.runtime.sleep(seconds)
    return 0


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


async def date(inv: Invocation) -> int:
    """GNU date: ``[-u] [+FORMAT]`` on the simulated clock (the hosts run in UTC)."""
    now = inv.runtime.wall()
    formats: list[str] = []
    for arg in inv.argv[1:]:
        if arg in ("-u", "--utc", "--universal"):
            continue
        if arg.startswith("+"):
            formats.append(arg[1:])
        elif arg.startswith("-") and arg != "-":
            await inv.err(
                f"date: invalid option -- '{arg.lstrip('-')[:1]}'\n"
                "Try 'date --help' for more information.\n"
            )
            return 1
        else:  # setting the clock: GNU date reads it as a date first
            await inv.err(f"date: invalid date '{arg}'\n")
            return 1
    if len(formats) > 1:
        await inv.err(
            f"date: extra operand '+{formats[1]}'\nTry 'date --help' for more information.\n"
        )
        return 1
    await inv.out(_strftime(formats[0] if formats else "%a %b %e %H:%M:%S UTC %Y", now) + "\n")
    return 0


def _strftime(fmt: str, now: float) -> str:
    """GNU date's +FORMAT: glibc's conversions, with %s and %N done here (UTC)."""
    seconds = int(now)
    nanos = f"{round((now - seconds) * 1e9):09d}"[:9]
    parts = fmt.split("%%")
    parts = [p.replace("%s", str(seconds)).replace("%N", nanos) for p in parts]
    return "%".join(time.strftime(p, time.gmtime(now)) for p in parts)


async def cat(inv: Invocation) -> int:
    status = 0
    for path in inv.argv[1:]:
        if inv.node.is_dir(path):
            await inv.err(f"cat: {path}: Is a directory\n")
            status = 1
            continue
        text = inv.node.read(path)
        if text is None:
            await inv.err(f"cat: {path}: No such file or directory\n")
            status = 1
            continue
        await inv.out(text)
    return status


async def mkdir(inv: Invocation) -> int:
    parents = False
    paths: list[str] = []
    for arg in inv.argv[1:]:
        if arg in ("-p", "--parents"):
            parents = True
        elif arg.startswith("-") and arg != "-":
            continue  # -m MODE and the like: modes are not simulated
        else:
            paths.append(arg)
    if not paths:
        await inv.err("mkdir: missing operand\nTry 'mkdir --help' for more information.\n")
        return 1
    status = 0
    for path in paths:
        error = inv.node.mkdir(path, parents)
        if error is not None:
            await inv.err(f"mkdir: cannot create directory '{path}': {error}\n")
            status = 1
    return status


async def rm(inv: Invocation) -> int:
    force = recursive = False
    paths: list[str] = []
    args = inv.argv[1:]
    for i, arg in enumerate(args):
        if arg == "--":  # the end of the options: what follows is paths, even "-x"
            paths += args[i + 1 :]
            break
        if arg.startswith("-") and len(arg) > 1:
            force |= "f" in arg
            recursive |= "r" in arg or "R" in arg
        else:
            paths.append(arg)
    if not paths and not force:
        await inv.err("rm: missing operand\nTry 'rm --help' for more information.\n")
        return 1
    status = 0
    for path in paths:
        error = inv.node.remove(path, recursive)
        if error == "No such file or directory" and force:
            continue
        if error is not None:
            await inv.err(f"rm: cannot remove '{path}': {error}\n")
            status = 1
    return status


async def test(inv: Invocation) -> int:
    args = inv.argv[1:]
    if inv.name == "[":
        if not args or args[-1] != "]":
            await inv.err("[: missing ']'\n")
            return 2
        args = args[:-1]
    negate = False
    if args and args[0] == "!":
        negate, args = True, args[1:]
    result = _test(inv, args)
    if isinstance(result, str):
        await inv.err(f"{inv.name}: {result}\n")  # coreutils test's own wording
        return 2
    return 0 if result != negate else 1


_NEVER = frozenset("LhpScugktOG")
"""Unary tests the simulated file system never passes: no symbolic links, pipes,
sockets, character devices, set-id or sticky bits, terminals; root owns nothing here."""


def _test(inv: Invocation, args: list[str]) -> bool | str:
    """The expression's value, or coreutils test's complaint about it."""
    node = inv.node
    if not args:
        return False
    if len(args) == 1:
        return args[0] != ""
    if len(args) == 2:
        flag, operand = args
        if flag == "-e":
            return node.exists(operand) or inv.world.is_block(node, operand)
        if flag in ("-r", "-w"):
            return node.exists(operand) or inv.world.is_block(node, operand)
        if flag == "-x":
            return node.is_dir(operand)  # no file here is executable; a directory is
        if flag == "-f":
            return node.is_file(operand)
        if flag == "-s":
            return bool(node.read(operand)) or inv.world.is_block(node, operand)
        if flag == "-d":
            return node.is_dir(operand)
        if flag == "-b":
            return inv.world.is_block(node, operand)
        if flag == "-n":
            return operand != ""
        if flag == "-z":
            return operand == ""
        if len(flag) == 2 and flag[0] == "-" and flag[1] in _NEVER:
            return False
        return f"'{flag}': unary operator expected"
    if len(args) == 3:
        left, op, right = args
        if op in ("=", "=="):
            return left == right
        if op == "!=":
            return left != right
        numeric = {"-eq", "-ne", "-lt", "-le", "-gt", "-ge"}
        if op in numeric:
            for value in (left, right):
                if not value.strip().lstrip("+-").isdigit():
                    return f"invalid integer '{value}'"
            a, b = int(left), int(right)
            return {
                "-eq": a == b, "-ne": a != b, "-lt": a < b,
                "-le": a <= b, "-gt": a > b, "-ge": a >= b,
            }[op]  # fmt: skip
        return f"'{op}': binary operator expected"
    return f"extra argument '{args[3]}'"


async def which(inv: Invocation) -> int:
    status = 0
    for name in inv.argv[1:]:
        found = inv.world.which(inv.node, name)
        if found is None:
            status = 1
        else:
            await inv.out(found + "\n")
    return status


async def mktemp(inv: Invocation) -> int:
    """``mktemp [-d] [-t] [TEMPLATE]``: a new name under /tmp (X's replaced)."""
    args = [a for a in inv.argv[1:] if not a.startswith("-")]
    template = args[0] if args else "tmp.XXXXXXXXXX"
    inv.world.temp_counter += 1
    suffix = f"{inv.world.temp_counter:010d}"
    stem = template.rstrip("X")
    name = stem + suffix[-(len(template) - len(stem)) :] if stem != template else template
    path = name if name.startswith("/") else f"/tmp/{name}"
    if "-d" in inv.argv[1:]:
        inv.node.mkdir(path, parents=True)
    else:
        inv.node.write(path, "")
    await inv.out(path + "\n")
    return 0


_POSIX_CLASSES = {
    "[:space:]": r"\s",
    "[:alpha:]": "a-zA-Z",
    "[:digit:]": "0-9",
    "[:alnum:]": "a-zA-Z0-9",
    "[:upper:]": "A-Z",
    "[:lower:]": "a-z",
    "[:blank:]": r" \t",
}


async def grep(inv: Invocation) -> int:
    """GNU grep's everyday part: ``-c -i -E -F -q -v [-e] PATTERN FILE...``; exit 0/1/2."""
    flags: set[str] = set()
    patterns: list[str] = []
    files: list[str] = []
    args = inv.argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-e" and i + 1 < len(args):
            patterns.append(args[i + 1])
            i += 2
            continue
        if arg.startswith("-") and len(arg) > 1 and arg != "--":
            flags.update(arg[1:])
        elif not patterns:
            patterns.append(arg)
        else:
            files.append(arg)
        i += 1
    if patterns and not files:
        return 1  # it reads standard input, which is empty here: no line matches
    if not patterns:
        await inv.err(
            "Usage: grep [OPTION]... PATTERNS [FILE]...\nTry 'grep --help' for more information.\n"
        )
        return 2
    unknown = flags - set("ciEFqvsh")
    if unknown:
        # GNU grep's words for an option it does not have (the simulated one has fewer).
        await inv.err(
            f"grep: invalid option -- '{sorted(unknown)[0]}'\n"
            "Usage: grep [OPTION]... PATTERNS [FILE]...\n"
            "Try 'grep --help' for more information.\n"
        )
        return 2
    regexes = [_grep_regex(p, flags) for p in patterns]
    status, found = 1, 0
    for path in files:
        text = inv.node.read(path)
        if text is None:
            if "s" not in flags:
                await inv.err(f"grep: {path}: No such file or directory\n")
            status = 2
            continue
        hits = [
            line
            for line in text.splitlines()
            if any(r.search(line) for r in regexes) != ("v" in flags)
        ]
        found += len(hits)
        prefix = f"{path}:" if len(files) > 1 and "h" not in flags else ""
        if "q" in flags:
            continue
        if "c" in flags:
            await inv.out(f"{prefix}{len(hits)}\n")
        else:
            for line in hits:
                await inv.out(f"{prefix}{line}\n")
    if found:
        return 0
    return status


def _grep_regex(pattern: str, flags: set[str]) -> re.Pattern[str]:
    if "F" in flags:
        body = re.escape(pattern)
    else:
        body = pattern
        for posix, python in _POSIX_CLASSES.items():
            body = body.replace(posix, python)
        if "E" not in flags:  # basic regular expressions: \( \) \| \+ are the operators
            body = body.replace(r"\(", "(").replace(r"\)", ")").replace(r"\|", "|")
    return re.compile(body, re.IGNORECASE if "i" in flags else 0)
