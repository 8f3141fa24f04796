"""The simulated ``xl`` prints xl 4.17's migration when the lab runs Xen >= 4.6 (stream v2).

Held against the real capture (``tests/data/xl/real-4.17/xl-v-migrate-pvh-success.stderr``,
Xen 4.17.7): its header with the JSON config flag, no per-iteration line, the same closing
handshake; the PV guest's libxc lines are those of the composed 4.17 PV transcript
(``tests/data/xl/xl-migrate-v2-4.17-verbose.txt``), the real PV capture being a failure.
Xen <= 4.5 keeps 3.x/4.4's per-round statistics.
"""

from __future__ import annotations

import re
from pathlib import Path

from backend.config import LabConfig, parse_lab
from backend.drivers.parse_xl import MigratePhase, XlMigrateParser, parse_xl_info
from backend.sim.clock import VirtualRuntime
from backend.sim.commands.base import Captured
from backend.sim.labs import build_world, model_for
from backend.sim.study import STUDY_LAB_TOML
from tests.support.sim_experiment import Experiment, run_experiment

XL = Path(__file__).resolve().parents[1] / "data" / "xl"
REAL = (XL / "real-4.17" / "xl-v-migrate-pvh-success.stderr").read_text().splitlines()
COMPOSED_PV = (XL / "xl-migrate-v2-4.17-verbose.txt").read_text().splitlines()


def lab(version: str) -> LabConfig:
    return parse_lab(STUDY_LAB_TOML + f'\n[simulation]\nxen_version = "{version}"\n', file="<t>")


def shape(line: str) -> str:
    """A line with its numbers (domids, lengths, addresses) taken out."""
    return re.sub(r"0x[0-9a-f]+|\d+", "N", line)


async def migrate(version: str, verbose: bool = True) -> list[str]:
    outcome = await run_experiment(
        Experiment(lab=lab(version), baseline_s=2, after_s=1, xl_verbose=verbose)
    )
    assert outcome.xl is not None and outcome.xl_exit == 0
    return [line for _, stream, line in outcome.xl.lines if stream == "stderr"]


async def test_xen_4_17_prints_what_real_xl_4_17_prints() -> None:
    got = await migrate("4.17")
    assert [shape(x) for x in got[:6]] == [shape(x) for x in REAL[:6]]  # header, JSON config
    assert got[-7:] == REAL[-7:]  # the handshake, word for word
    assert not any("delta" in x or "Reloading memory pages" in x for x in got)
    xc = [x for x in got if x.startswith("xc: ")]
    assert xc and {shape(x) for x in xc} <= {shape(x) for x in COMPOSED_PV}
    assert "xc: info: Restore successful" in got and "" not in got  # v2: no empty lines
    parser = XlMigrateParser()
    for line in got:
        parser.feed(line)
    assert not parser.malformed
    assert parser.result is not None and parser.result.phase is MigratePhase.DONE
    assert parser.stream_version == 2


async def test_without_v_xl_4_17_prints_its_own_lines_only() -> None:
    got = await migrate("4.17", verbose=False)
    assert [x for x in got if x.startswith(("xc:", "libxl:"))] == []
    assert got[-1] == "Migration successful." and len(got) == 5 + 7


async def test_xen_4_5_keeps_the_per_round_statistics() -> None:
    got = await migrate("4.5")
    assert any(x.startswith("xc: detail: delta ") for x in got)
    assert "Saving to migration stream new xl format (info 0x0/0x0/1076)" in got


async def test_xl_info_says_the_labs_xen() -> None:
    for version, expected in (("4.17", "4.17.7"), (None, "4.4.1")):
        source = lab(version) if version else parse_lab(STUDY_LAB_TOML, file="<t>")
        runtime = VirtualRuntime(model_for(source))
        world = build_world(source, runtime)
        out = Captured(runtime)
        assert await world.execute(world.node("xenserver1"), ["xl", "info"], out) == 0
        assert parse_xl_info(out.text()).xen_version == expected
