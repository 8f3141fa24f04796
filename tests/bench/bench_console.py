"""How fast and how light is the console? Prints numbers; asserts nothing.

The console runs as a real process on a pseudo-terminal (160x48, truecolor), and
this script reads what it draws, like a terminal would:

  1. time to first frame: from starting the process to the first complete screen
     (status bar and footer drawn), median of --runs (10), side by side with its anchor:
     a bare Textual app (a Static and a Footer) started the same way, the two
     alternating, and their ratio (target <= 2x). By default `miglab replay LOG` of a
     recorded session, started as `miglab` is (python -m tui.cli);
     `--first-frame-command "miglab demo"` times any other command, and `--demo` times
     `miglab demo` itself (its first frame, and its first look at the simulated lab:
     the hosts' free memory drawn), with `--first-frame-only` to stop there.
  2. CPU use with 4 traces at 100 samples/s each (ping, sysbench cpu and memory,
     dbench) for --seconds (default 10), after a 3 s warm-up: the child's user+system
     time from /proc/PID/stat over wall time; and its resident memory beside a bare
     Textual app's. The samples are made in the child
     (pydantic Sample events, as a backend would publish them); that part is
     measured on its own and reported too. Target: <= 15 % of one core.
  3. key-press-to-repaint latency while those traces stream: the time from writing
     a key to the pty until the text that key makes appear has arrived: cursor up in
     the command log, end, ? (help opens), q (it closes), l (the log shows again).
     Then every other key of the registry (tui/keys.py): a host-changing key is refused
     on this read-only console (the time to its notification), a view key times what
     it opens or changes. Target: p99 <= 50 ms. Reported apart: a bare escape (the
     console's driver takes a lone ESC as the escape key 20 ms after it, tui/driver.py;
     Textual's own knew it only when its 100 ms input poll timed out; a terminal that
     speaks the kitty keyboard protocol, which Textual asks for, sends escape as CSI 27 u
     instead, timed too; q and n close every dialog at once) and t (a new theme: every
     widget restyled and the whole screen drawn again; the stylesheets are parsed once
     per theme, tui/theme_css.py).

    .venv/bin/python tests/bench/bench_console.py [--seconds 10] [--presses 30]
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import gc
import json
import math
import os
import pty
import random
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

COLUMNS, ROWS = 160, 48
RATE = 100  # samples per second per trace
COMMANDS = 20  # in the command log of the synthetic lab
PROBES = ("ping", "sysbench-cpu", "sysbench-memory", "dbench")


# -- the child: the console on a replay, or on a synthetic stream ---------------------------


def child_bare() -> int:
    """The anchor: the least a Textual app draws for a first frame."""
    from textual.app import App, ComposeResult
    from textual.widgets import Footer, Static

    class Bare(App[int]):
        BINDINGS: ClassVar = [("q", "quit", "quit")]

        def compose(self) -> ComposeResult:
            yield Static("bare-ready")
            yield Footer()

    Bare().run()
    return 0


def child_synthetic(stats_path: str) -> int:
    from backend.events import (
        CommandFinished,
        CommandStarted,
        Event,
        MigrationFinished,
        MigrationProgress,
        Phase,
        Sample,
    )
    from tui.app import MiglabApp
    from tui.backend_api import EventCallback, LabLayout, ReadOnlyActions
    from tui.widgets.plot import TraceGrid

    layout = LabLayout(
        name="bench", storage_host="storage", hypervisor_hosts=("xen1", "xen2"), guest="guest"
    )

    class Synthetic(ReadOnlyActions):
        """4 traces at RATE samples/s, and a migration every 20 s."""

        def __init__(self) -> None:
            self.layout = layout
            self.simulated = True
            self.readonly = True
            self.session_log = None
            self.session_start = time.time()
            self._callbacks: list[EventCallback] = []
            self._task: asyncio.Task[None] | None = None
            self.samples = 0
            self.make_s = 0.0

        def clock(self) -> float:
            return time.time()

        def subscribe(self, callback: EventCallback) -> None:
            self._callbacks.append(callback)

        async def start(self) -> None:
            self._task = asyncio.get_running_loop().create_task(self._run())

        async def close(self) -> None:
            if self._task is not None:
                self._task.cancel()

        def _publish(self, event: Event) -> None:
            for callback in self._callbacks:
                callback(event)

        async def _run(self) -> None:
            # A command log to move about in (the latency of cursor keys).
            for n in range(COMMANDS):
                argv = ["true", f"bench-cmd-{n:02d}"]
                self._publish(CommandStarted(host="storage", cmd_id=n + 1, argv=argv))
                self._publish(CommandFinished(
                    host="storage", cmd_id=n + 1, argv=argv, exit_status=0, duration_s=0.001
                ))  # fmt: skip
            rng = random.Random(1)
            tick = 1 / RATE
            seq = 0
            next_t = time.monotonic()
            while True:
                now = time.time()
                seq += 1
                started = time.perf_counter()
                batch = [
                    Sample(t=now, probe="ping", host="storage", unit={"rtt_ms": "ms"},
                           values={"seq": seq, "rtt_ms": 0.3 + rng.random() * 0.1}),
                    Sample(t=now, probe="sysbench-cpu", host="guest",
                           values={"eps": 9900 + rng.random() * 200}),
                    Sample(t=now, probe="sysbench-memory", host="guest",
                           values={"mib_per_s": 270 + rng.random() * 5}),
                    Sample(t=now, probe="dbench", host="guest",
                           values={"mb_per_s_1s": 19 + rng.random()}),
                ]  # fmt: skip
                self.make_s += time.perf_counter() - started
                cycle = seq % (20 * RATE)
                if cycle == 4 * RATE:
                    batch.append(Phase(t=now, name="migrating"))
                if 4 * RATE <= cycle < 8 * RATE and cycle % (RATE // 2) == 0:
                    done = (cycle - 4 * RATE) / (4 * RATE)
                    gib = 2**30
                    batch.append(MigrationProgress(
                        t=now, domain="guest", source="xen1", dest="xen2",
                        transferred_bytes=int(done * gib), remaining_bytes=int((1 - done) * gib),
                        total_bytes=gib, mbps=94.0, iteration=1,
                    ))  # fmt: skip
                if cycle == 8 * RATE:
                    batch.append(MigrationFinished(
                        t=now, domain="guest", source="xen1", dest="xen2", ok=True,
                        total_time_ms=4000,
                    ))  # fmt: skip
                for event in batch:
                    self._publish(event)
                self.samples += 4
                next_t += tick
                await asyncio.sleep(max(0.0, next_t - time.monotonic()))

    backend = Synthetic()
    app = MiglabApp(backend, theme="miglab-dark")  # type: ignore[arg-type]

    def save_stats() -> None:
        grid = app.screen.query_one(TraceGrid)
        plots = {
            f"{p}@{h}": {"renders": plot.renders, "last_cost_ms": plot.cost_s * 1000}
            for (p, h), plot in grid.plots.items()
        }
        full_passes = {
            "all": gc.get_stats()[2]["collections"],  # start-up's and the interpreter's too
            "console": app.full_passes.passes,  # made between keys (tui/garbage.py)
        }
        Path(stats_path).write_text(
            json.dumps(
                {
                    "samples": backend.samples,
                    "make_s": backend.make_s,
                    "plots": plots,
                    "full_gc_passes": full_passes,
                }
            )
        )

    original_quit = app.action_quit

    async def quit_with_stats() -> None:
        save_stats()
        await original_quit()

    app.action_quit = quit_with_stats  # type: ignore[method-assign]
    app.run()
    return 0


# -- the parent: a terminal that times what the child draws -----------------------------------


class Terminal:
    """A pty running one command; a thread keeps reading what it writes."""

    def __init__(self, argv: list[str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor", PYTHONPATH=str(ROOT))
        env.pop("NO_COLOR", None)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, start_new_session=True
        )
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            with self.changed:
                if not data:
                    self.changed.notify_all()
                    return
                self.output.extend(data)
                self.changed.notify_all()

    def mark(self) -> int:
        with self.lock:
            return len(self.output)

    def wait_for(self, needle: bytes, start: int = 0, timeout: float = 30.0) -> float:
        """Seconds (perf_counter) at which ``needle`` had arrived after offset ``start``."""
        deadline = time.perf_counter() + timeout
        with self.changed:
            while needle not in self.output[max(0, start - len(needle)) :]:
                left = deadline - time.perf_counter()
                if left <= 0 or not self.reader.is_alive():
                    raise TimeoutError(f"{needle!r} did not appear within {timeout} s")
                self.changed.wait(left)
            return time.perf_counter()

    def press(self, key: bytes) -> float:
        sent = time.perf_counter()
        os.write(self.master, key)
        return sent

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """Resident memory (VmRSS) of the process, in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def close(self, quit_key: bytes = b"q") -> None:
        if self.process.poll() is None:
            os.write(self.master, quit_key)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=5)
        os.close(self.master)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def describe(name: str, ms: list[float]) -> str:
    return (
        f"{name:<34} n={len(ms):<3} median {statistics.median(ms):6.1f} ms   "
        f"p90 {percentile(ms, 90):6.1f} ms   p99 {percentile(ms, 99):6.1f} ms   "
        f"max {max(ms):6.1f} ms"
    )


def one_frame(argv: list[str], markers: list[bytes]) -> float:
    terminal = Terminal(argv)
    try:
        done = max(terminal.wait_for(marker) for marker in markers)
        return (done - terminal.started) * 1000
    finally:
        terminal.close()


def first_frame(
    argv: list[str], markers: list[bytes], bare: list[str], runs: int
) -> tuple[list[float], list[float]]:
    """ms to the first frame of ``argv`` and of the bare anchor, runs alternating."""
    ours, anchor = [], []
    for _ in range(runs):
        anchor.append(one_frame(bare, [b"bare-ready", b"quit"]))
        ours.append(one_frame(argv, markers))
    return ours, anchor


def demo_frames(
    argv: list[str], bare: list[str], runs: int
) -> tuple[list[float], list[float], list[float]]:
    """`miglab demo`: ms to its first frame (SIMULATED badge, key bar), and to its first
    look at the simulated lab (the hypervisor hosts' free memory in their panes); and
    the bare anchor's first frame, runs alternating."""
    frames, looks, anchor = [], [], []
    for _ in range(runs):
        anchor.append(one_frame(bare, [b"bare-ready", b"quit"]))
        terminal = Terminal(argv)
        try:
            frame = max(terminal.wait_for(marker) for marker in (b"SIMULATED", b"quit"))
            frames.append((frame - terminal.started) * 1000)
            looks.append((terminal.wait_for(b"MB free") - terminal.started) * 1000)
        finally:
            terminal.close()
    return frames, looks, anchor


def bare_rss(bare: list[str]) -> str:
    """The bare Textual app's resident memory once it has drawn, for comparison."""
    terminal = Terminal(bare)
    try:
        terminal.wait_for(b"bare-ready")
        return f"the bare Textual app {terminal.rss_mb():.0f} MiB"
    finally:
        terminal.close()


def ratio(ours: list[float], anchor: list[float]) -> str:
    return (
        f"   ratio of medians: {statistics.median(ours) / statistics.median(anchor):.2f}x "
        "the bare Textual app (target <= 2x)"
    )


def background_sgr(rgb: tuple[int, int, int]) -> bytes:
    """A truecolor background in an SGR sequence, alone or beside a foreground colour
    (``ESC[38;2;...;48;2;R;G;Bm``: cells drawn with the text colour set too)."""
    return "48;2;{};{};{}m".format(*rgb).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument("--runs", type=int, default=10, help="first-frame runs")
    parser.add_argument("--first-frame-command", help="time this command instead of a replay")
    parser.add_argument("--first-frame-marker", action="append", help="text of the first frame")
    parser.add_argument("--demo", action="store_true", help="time `miglab demo`'s first frame")
    parser.add_argument(
        "--first-frame-only", action="store_true", help="stop after the first-frame timing"
    )
    parser.add_argument("--child", choices=("synthetic", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--arg", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "synthetic":
        sys.exit(child_synthetic(args.arg))
    if args.child == "bare":
        sys.exit(child_bare())

    me = [sys.executable, str(Path(__file__).resolve())]
    bare = [*me, "--child", "bare"]
    miglab = [sys.executable, "-m", "tui.cli"]
    print(
        f"console benchmark: {COLUMNS}x{ROWS} pty, {os.cpu_count()} cores, "
        f"python {sys.version.split()[0]}"
    )

    # 1. time to first frame
    with tempfile.TemporaryDirectory() as scratch:
        if args.demo:
            demo = [*miglab, "demo", "--log-dir", scratch]
            frames, looks, anchor = demo_frames(demo, bare, args.runs)
            print("\n1. time to first frame: miglab demo (the simulated lab starts in-process)")
            print(describe("   bare Textual app: first frame", anchor))
            print(describe("   start -> first full frame", frames))
            print(ratio(frames, anchor))
            print(describe("   start -> first look at the lab", looks))
        elif args.first_frame_command:
            argv = shlex.split(args.first_frame_command)
            markers = [m.encode() for m in args.first_frame_marker or ["quit"]]
            what = args.first_frame_command
        else:
            from tests.tui.session_fixture import write_session

            log = Path(scratch) / "session.jsonl"
            asyncio.run(write_session(log))
            argv = [*miglab, "replay", str(log), "--speed", "0"]
            markers = [b"sandbox", b"quit"]
            what = "miglab replay LOG (the console's start-up, no hosts)"
        if not args.demo:
            times, anchor = first_frame(argv, markers, bare, args.runs)
            print(f"\n1. time to first frame: {what}")
            print(describe("   bare Textual app: first frame", anchor))
            print(describe("   start -> first full frame", times))
            print(ratio(times, anchor))
    if args.first_frame_only:
        return

    # 2. CPU with 4 traces at RATE samples/s, 3. latency while they stream
    with tempfile.TemporaryDirectory() as scratch:
        stats = Path(scratch) / "stats.json"
        terminal = Terminal([*me, "--child", "synthetic", "--arg", str(stats)])
        try:
            terminal.wait_for(b"bench")
            time.sleep(3.0)  # warm-up: imports done, all four plots on screen
            cpu0, wall0 = terminal.cpu_seconds(), time.perf_counter()
            time.sleep(args.seconds)
            cpu1, wall1 = terminal.cpu_seconds(), time.perf_counter()
            share = (cpu1 - cpu0) / (wall1 - wall0) * 100
            print(
                f"\n2. CPU with {len(PROBES)} traces x {RATE} samples/s for {wall1 - wall0:.1f} s"
            )
            print(f"   console process: {share:.1f} % of one core (target <= 15 %)")
            print(f"   memory: console {terminal.rss_mb():.0f} MiB resident, {bare_rss(bare)}")

            latency: dict[str, list[float]] = {}

            def timed(name: str, key: bytes, marker: bytes, settle: float = 0.15) -> None:
                start = terminal.mark()
                sent = terminal.press(key)
                done = terminal.wait_for(marker, start)
                latency.setdefault(name, []).append((done - sent) * 1000)
                time.sleep(settle)

            last = COMMANDS - 1
            for _ in range(max(1, args.presses // 15)):
                for row in range(last - 1, last - 16, -1):  # the cursor up the log
                    timed("up   (cursor in the log)", b"\x1b[A", f"bench-cmd-{row:02d}".encode())
                timed("end  (back to the newest)", b"\x1b[F", f"bench-cmd-{last:02d}".encode())
            newest = f"bench-cmd-{last:02d}".encode()
            for n in range(args.presses):
                timed("?    (help opens)", b"?", b"miglab keys", 0.1)
                if n % 3 == 1:
                    timed("q    (help closes)", b"q", newest, 0.1)
                elif n % 3 == 2:
                    # A terminal with the kitty keyboard protocol (Textual asks for it)
                    # sends escape as CSI 27 u: nothing to wait for.
                    timed("esc  (help closes: CSI 27 u)", b"\x1b[27u", newest, 0.1)
                else:
                    timed("esc  (help closes: bare escape)", b"\x1b", newest, 0.1)
                terminal.press(b"l")  # hide the log, unmeasured
                time.sleep(0.25)
                timed("l    (log shows again)", b"l", b"commands")
            theme_bg = [(246, 246, 243), (0, 0, 0), (27, 29, 35)]  # light, high-contrast, dark
            for n in range(3 * max(1, args.presses // 3)):
                timed("t    (theme: all restyled)", b"t", background_sgr(theme_bg[n % 3]), 0.2)
            unmeasured = every_other_key(timed, terminal, max(3, args.presses // 3))
            print("\n3. key press -> repaint, while the traces stream")
            common: list[float] = []
            for name, values in latency.items():
                print(describe("   " + name, values))
                if not name.startswith(("t ", "esc  (help closes: bare")):
                    common.extend(values)
            print(describe("   all but t and bare esc", common) + "   (target p99 <= 50 ms)")
            every = [ms for values in latency.values() for ms in values]
            print(describe("   every key", every) + "   (target p99 <= 50 ms)")
            print(f"   not measured here: {unmeasured}")
        finally:
            terminal.close()
        if stats.exists():
            data = json.loads(stats.read_text())
            per_sample_us = data["make_s"] / max(data["samples"], 1) * 1e6
            source_share = data["make_s"] / (time.perf_counter() - terminal.started) * 100
            print(
                f"\n   in the child: {data['samples']} samples made at {per_sample_us:.1f} us each "
                f"(the synthetic source's own share: "
                f"{source_share:.2f} % of a core)"
            )
            passes = data["full_gc_passes"]
            print(
                f"   full garbage-collector passes: {passes['all']} in all, "
                f"{passes['console']} of them made by the console between keys"
            )
            for name, plot in data["plots"].items():
                print(
                    f"   plot {name:<24} {plot['renders']:5d} redraws, last one "
                    f"{plot['last_cost_ms']:.1f} ms"
                )


# What each remaining key of the registry draws on the synthetic (read-only, live) console.
_KEY_BYTES = {"enter": b"\r", "ctrl+p": b"\x10", "question_mark": b"?", "end": b"\x1b[F"}
_SHOWS = {
    "ping_interval": b"does not ping the guest",
    "toggle_polls": b"commands and polls",
    "show_output": b"escape closes",
    "open_log": b"Replay a session log",
    # its input's cursor sits on the placeholder's first letter: "S" is drawn apart
    "app.command_palette": b"earch",
}
_CLOSES_WITH_ESCAPE = {"show_output", "open_log", "app.command_palette"}


def every_other_key(timed: Any, terminal: Terminal, presses: int) -> str:
    """Time every key of tui/keys.py not timed above: a host-changing key is refused on
    this read-only console (its notification), a view key shows what it shows. Returns
    the keys left out, and why."""
    from tui import keys

    done = {"toggle_log", "help", "app.next_theme", "app.quit", "follow_log"}
    left: list[str] = []
    for key in keys.KEYS:
        if key.action in done:
            continue
        if key.key is None:
            left.append(f"{key.action} (no key: palette only)")
            continue
        if key.group == "replay":
            left.append(f"{key.key} (replay only)")
            continue
        marker = f"{key.label} is disabled".encode() if key.changes_host else _SHOWS.get(key.action)
        if marker is None:
            left.append(f"{key.key} (no text to wait for)")
            continue
        sent = _KEY_BYTES.get(key.key, key.key.encode())
        for _ in range(presses):
            timed(f"{key.key:<5}({key.action})", sent, marker, 0.1)
            if key.action in _CLOSES_WITH_ESCAPE:
                terminal.press(b"\x1b")
                time.sleep(0.3)
            elif key.action == "toggle_polls":
                terminal.press(sent)  # back to commands only
                time.sleep(0.3)
    return "; ".join(left) or "none"


if __name__ == "__main__":
    main()
