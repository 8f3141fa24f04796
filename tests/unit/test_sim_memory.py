"""Guest memory as pages: working sets that dirty pages randomly or sequentially."""

from __future__ import annotations

import math

import pytest

from backend.sim.memory import PAGES_PER_MIB, GuestMemory, Region


def test_random_writes_saturate_at_the_working_set() -> None:
    region = Region("heap", pages=1000, rate=500.0, pattern="random")
    region.advance(2.0)  # 1000 writes over 1000 pages: 1 - 1/e of them distinct
    assert region.dirty == pytest.approx(1000 * (1 - math.exp(-1)))
    region.advance(100.0)
    assert region.dirty == pytest.approx(1000, abs=1e-6)


def test_sequential_writes_dirty_a_new_page_each_until_all_are_dirty() -> None:
    region = Region("file", pages=1000, rate=300.0, pattern="sequential")
    region.advance(2.0)
    assert region.dirty == pytest.approx(600)
    region.advance(2.0)
    assert region.dirty == 1000


def test_speed_scales_the_writing() -> None:
    slow, fast = Region("a", 1000, 100.0), Region("b", 1000, 100.0)
    slow.advance(1.0, speed=0.5)
    fast.advance(0.5)
    assert slow.dirty == pytest.approx(fast.dirty)


def test_clean_returns_the_dirty_count_and_resets_it() -> None:
    mem = GuestMemory(64)
    assert mem.pages == 64 * PAGES_PER_MIB
    mem.set_region("a", 100, 1000.0, "sequential")
    mem.set_region("b", 50, 1000.0, "sequential")
    mem.advance(1.0)
    assert mem.dirty() == 150
    assert mem.clean() == 150
    assert mem.dirty() == 0


def test_a_region_never_outgrows_the_memory_left() -> None:
    mem = GuestMemory(16)  # 4096 pages
    mem.set_region("big", 4000, 1.0)
    region = mem.set_region("more", 1000, 1.0)
    assert region.pages == 96
    assert mem.used_pages == mem.pages


def test_pages_of_a_stopped_workload_stay_dirty_until_the_next_clean() -> None:
    mem = GuestMemory(16)
    mem.set_region("w1", 200, 1e6, "sequential")
    mem.advance(1.0)
    mem.remove_region("w1")
    assert mem.dirty() == 200  # libxc still has to send what was written
    assert mem.clean() == 200
    assert mem.dirty() == 0
    assert "w1" not in mem.regions
