"""Spare trace files made ahead of time: how many, where, and that none stays behind."""

from __future__ import annotations

import os

from fmflow.observe.background import SpareFiles


def spares_in(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(".spare-"))


def test_spares_follow_the_demand_of_each_folder(tmp_path):
    pool = SpareFiles()
    assert pool.take(str(tmp_path)) is None          # none yet: the caller makes its own file
    pool.refill()
    assert len(spares_in(tmp_path)) == 2
    for _ in range(10):
        pool.take(str(tmp_path))
    pool.refill()                                     # 10 taken since the last refill: 20 ready
    assert len(pool._spares[str(tmp_path)]) == 20
    assert len(spares_in(tmp_path)) == 22             # and the 2 taken (a trace would have renamed them)
    taken = pool.take(str(tmp_path))
    assert os.path.dirname(taken) == str(tmp_path) and os.path.basename(taken).startswith(f".spare-{os.getpid()}-")


def test_idle_and_vanished_folders_are_forgotten(tmp_path):
    pool = SpareFiles()
    idle, gone = tmp_path / "idle", tmp_path / "gone"
    idle.mkdir()
    gone.mkdir()
    pool.take(str(idle))
    pool.take(str(gone))
    pool.refill()
    for name in spares_in(gone):
        os.remove(gone / name)
    gone.rmdir()
    for _ in range(SpareFiles.IDLE + 1):
        pool.refill()
    assert spares_in(idle) == [] and pool._taken == {} and pool._spares == {}


def test_spares_of_dead_processes_are_removed(tmp_path):
    stale = tmp_path / ".spare-999999999-1"     # no such process
    stale.write_text("")
    mine = tmp_path / f".spare-{os.getpid()}-77"
    mine.write_text("")
    pool = SpareFiles()
    pool.take(str(tmp_path))
    pool.refill()
    assert not stale.exists() and mine.exists()
    pool.remove_all()
    assert spares_in(tmp_path) == [mine.name]
