"""Work folders and temporary files on shared storage: host + pid in names, provable staleness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from adcvsr_cli.media.outputs import _temp_path, remove_stale_parts
from adcvsr_cli.workdir import (
    STALE_AFTER_S,
    Manifest,
    WorkFolderBusy,
    WorkLock,
    differences,
    host_name,
    owner_gone,
    parse_owner,
    remove_stale_temps,
    temp_name,
    work_dir,
)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temp_names_carry_host_and_pid(tmp_path):
    tmp = os.path.basename(_temp_path(str(tmp_path / "out.mkv")))
    assert tmp.startswith(f".out.adcvsr-{host_name()}-{os.getpid()}-") and tmp.endswith(".part.mkv")
    seg = temp_name(tmp_path / "seg-00001.mkv").name
    assert parse_owner(seg) == (host_name(), os.getpid())
    assert parse_owner("seg-00001.mkv") is None


def test_only_provably_dead_owners_lose_their_files(tmp_path):
    now = time.time()
    here, dead = host_name(), dead_pid()
    assert owner_gone(here, dead, now)  # this host, process gone
    assert not owner_gone(here, os.getpid(), now)  # alive
    assert not owner_gone("other-node", dead, now)  # another node: its pid means nothing here
    assert owner_gone("other-node", dead, now - STALE_AFTER_S - 1)  # ... unless long untouched
    files = {
        "mine_dead": f".a.adcvsr-{here}-{dead}-0123abcd.part.mkv",
        "mine_live": f".b.adcvsr-{here}-{os.getpid()}-0123abcd.part.mkv",
        "other_recent": f".c.adcvsr-other-node-{dead}-0123abcd.part.mkv",
        "other_old": f".d.adcvsr-other-node-{dead}-0123abcd.part.mkv",
        "legacy_dead": f".e.adcvsr-{dead}-0123abcd.part.mkv",
    }
    for name in files.values():
        (tmp_path / name).write_bytes(b"x")
    old = now - STALE_AFTER_S - 10
    os.utime(tmp_path / files["other_old"], (old, old))
    removed = sorted(p.name for p in remove_stale_parts(tmp_path))
    assert removed == sorted([files["mine_dead"], files["other_old"], files["legacy_dead"]])
    assert (tmp_path / files["other_recent"]).exists() and (tmp_path / files["mine_live"]).exists()


def test_work_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path):
    folder = work_dir(tmp_path / "out.mkv")
    assert folder.name == ".out.mkv.adcvsr-work"
    folder.mkdir()
    lock = folder / "lock"
    lock.write_text(json.dumps({"host": "other-node", "pid": 1}))
    with pytest.raises(WorkFolderBusy, match="host other-node, process 1"):
        WorkLock(folder).acquire("out.mkv")
    lock.write_text(json.dumps({"host": host_name(), "pid": dead_pid()}))
    mine = WorkLock(folder)
    mine.acquire("out.mkv")
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    stale = f".seg-00002.{host_name()}-{dead_pid()}.part.mkv"
    live = f".seg-00003.{host_name()}-{os.getpid()}.part.mkv"
    for name in (stale, live, "seg-00001.mkv"):
        (folder / name).write_bytes(b"x")
    assert [p.name for p in remove_stale_temps(folder)] == [stale]
    assert (folder / live).exists()
    assert (folder / "seg-00001.mkv").exists()
    mine.release()
    assert not lock.exists()


def test_manifest_round_trip_and_differences(tmp_path):
    m = Manifest(
        input={"size": 1, "mtime_ns": 2, "head_tail_sha256": "ab"},
        options={"upscale.chunk": 25, "encode.crf": None},
        plan={"frames": 3},
    )
    m.done[1] = {"frames": 3}
    m.save(tmp_path)
    back = Manifest.load(tmp_path)
    assert back is not None and back.done == {1: {"frames": 3}} and back.plan == {"frames": 3}
    changes = differences(back, {**m.input, "size": 5}, {"upscale.chunk": 21, "encode.crf": None})
    assert changes == ["the input's size changed", "--chunk was 25, now 21"]
    (tmp_path / "manifest.json").write_text("{torn")
    assert Manifest.load(tmp_path) is None
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writer left nothing behind
