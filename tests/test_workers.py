"""The batch queue (whole files and segments on one pool of device workers), in process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_segmented import LOSSLESS, OPTS, assert_same, make_shots, tiny
from tiny import write_tiny_weights

from adcvsr_cli.errors import VideoError
from adcvsr_cli.jobqueue import Callbacks, FileWork, JobQueue
from adcvsr_cli.pipeline import upscale
from adcvsr_cli.segmented import device_pool
from adcvsr_cli.workdir import work_dir


class Record(Callbacks):
    def __init__(self) -> None:
        self.started: list[int] = []
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.written: dict[int, list[str]] = {}
        self.errors: dict[int, BaseException] = {}

    def start(self, key: int) -> None:
        self.started.append(key)

    def event(self, key: int, e: dict[str, Any]) -> None:
        self.events.append((key, e))

    def run_event(self, e: dict[str, Any]) -> None:
        self.events.append((-1, e))

    def done(self, key: int, report: Any, workers: list[str], seconds: float) -> None:
        self.written[key] = workers

    def failed(self, key: int, error: BaseException, workers: list[str]) -> None:
        self.errors[key] = error


def dies_on_call(n: int, error: BaseException) -> Any:
    """A tiny temporal network whose ``n``-th network call raises ``error``."""
    up = tiny(True)
    calls = {"n": 0}
    clip = up.upscale_clip

    def failing(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == n:
            raise error
        return clip(*args, **kw)

    up.upscale_clip = failing
    return up


def test_a_worker_that_dies_mid_file_has_the_file_redone(tmp_path):
    srcs = [make_shots(tmp_path / f"{n}.mp4", [10]) for n in "abc"]  # two chunks each
    out = tmp_path / "out"
    out.mkdir()
    # Worker 1 dies in its second network call: in the middle of the first file it took.
    dying = dies_on_call(2, RuntimeError("CUDA error: an illegal memory access was encountered"))
    queue = JobQueue(
        device_pool([tiny(True), dying]), tiny(True), OPTS, LOSSLESS, segment=0, restart=False,
        devices="cpu,cpu",
    )  # fmt: skip
    rec = Record()
    queue.run([FileWork(i, str(s), str(out / f"{s.stem}.mkv")) for i, s in enumerate(srcs)], rec)
    assert rec.errors == {} and sorted(rec.written) == [0, 1, 2] and rec.started == [0, 1, 2]
    for s in srcs:
        upscale(s, tmp_path / f"{s.stem}-one.mkv", tiny(True), OPTS, LOSSLESS)
        assert_same(out / f"{s.stem}.mkv", tmp_path / f"{s.stem}-one.mkv", s)
    # Worker 0 redid the file worker 1 was in the middle of.
    assert all(w == ["cpu worker 0"] for w in rec.written.values())
    lost = [e["message"] for _, e in rec.events if e["type"] == "warning"]
    assert len(lost) == 1 and "cpu worker 1 failed (RuntimeError: CUDA error" in lost[0]
    assert sorted(p.name for p in out.iterdir()) == ["a.mkv", "b.mkv", "c.mkv"]  # no leftovers
    # Each file's progress is its own stream, ending at its frame count.
    for key in range(3):
        done = [e["frames_done"] for k, e in rec.events if k == key and e["type"] == "progress"]
        assert done[-1] == 10


def test_a_failing_segment_fails_its_file_only_and_keeps_its_work_folder(tmp_path):
    long = make_shots(tmp_path / "long.mp4", [20, 14])
    short = make_shots(tmp_path / "short.mp4", [10])
    out = tmp_path / "out"
    out.mkdir()
    # One worker, so the order is known: the long file's segments (the second one fails for
    # its input's sake), then the short file, which must still be written.
    bad = dies_on_call(3, VideoError("long.mp4: corrupt packet at frame 9"))
    queue = JobQueue(
        device_pool([bad]), tiny(True), OPTS, LOSSLESS, segment=8, restart=False, devices="cpu"
    )
    rec = Record()
    files = [
        FileWork(0, str(long), str(out / "long.mkv")),
        FileWork(1, str(short), str(out / "short.mkv")),
    ]
    queue.run(files, rec)
    assert list(rec.errors) == [0] and "corrupt packet" in str(rec.errors[0])
    assert list(rec.written) == [1] and (out / "short.mkv").is_file()
    assert not (out / "long.mkv").exists()
    folder = work_dir(out / "long.mkv")
    assert folder.is_dir() and not (folder / "lock").exists()  # kept for a rerun, unlocked
    assert len([e for k, e in rec.events if k == 0 and e["type"] == "segment"]) == 1


@pytest.mark.parametrize("devices", [["cpu"], ["cpu", "cpu"]], ids=["one", "two"])
@pytest.mark.parametrize("verbose", [0, 2], ids=["plain", "vv"])
def test_a_bug_met_on_one_file_fails_that_file_only(
    tmp_path, monkeypatch, capsys, devices, verbose
):
    """A bug (not bad input) on one file of a batch: that file is reported in one line (the
    traceback only with -vv), the others are written, the exit status says some failed."""
    import adcvsr_cli.jobqueue
    import adcvsr_cli.pipeline
    from adcvsr_cli.batch import plan_jobs
    from adcvsr_cli.cli.jobs import Scale, run_jobs
    from adcvsr_cli.cli.report import Reporter
    from adcvsr_cli.media import EncodeOptions

    (tmp_path / "in").mkdir()
    for n in "ab":
        make_shots(tmp_path / "in" / f"{n}.mp4", [4], bframes=False)
    real = adcvsr_cli.pipeline.upscale

    def buggy(src: Any, *args: Any, **kw: Any) -> Any:
        if str(src).endswith("a.mp4"):
            raise KeyError("boom")
        return real(src, *args, **kw)

    monkeypatch.setattr(adcvsr_cli.pipeline, "upscale", buggy)
    monkeypatch.setattr(adcvsr_cli.jobqueue, "upscale_one", buggy)
    weights = tmp_path / "tiny.safetensors"
    write_tiny_weights(weights, temporal=True)
    plan = plan_jobs([str(tmp_path / "in")], str(tmp_path / "out"), ext="mkv")
    reporter = Reporter(verbose=verbose, json_file=tmp_path / "log.jsonl")
    with reporter:
        code = run_jobs(
            plan, OPTS, EncodeOptions(), reporter, Scale(segment=0, devices=devices),
            weights=str(weights), device="cpu",
        )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3 and (tmp_path / "out" / "b.mkv").is_file()
    assert not (tmp_path / "out" / "a.mkv").exists()
    line = [x for x in err.splitlines() if x.startswith("adcvsr: error:")]
    assert len(line) == 1 and "KeyError: 'boom'" in line[0] and "-vv" in line[0], err
    assert ("Traceback (most recent call last)" in err) == (verbose == 2), err


def test_every_worker_lost_fails_the_unfinished_files_in_one_line(tmp_path, monkeypatch, capsys):
    """Both workers' devices fail: each is retired in turn, then the files not finished are
    reported as failed (no traceback) and the run exits with the batch's failure status."""
    import adcvsr_cli.jobqueue
    from adcvsr_cli.batch import plan_jobs
    from adcvsr_cli.cli.jobs import Scale, run_jobs
    from adcvsr_cli.cli.report import Reporter
    from adcvsr_cli.media import EncodeOptions

    (tmp_path / "in").mkdir()
    for n in "abc":
        make_shots(tmp_path / "in" / f"{n}.mp4", [4], bframes=False)

    def broken_device(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("CUDA error: unspecified launch failure")

    monkeypatch.setattr(adcvsr_cli.jobqueue, "upscale_one", broken_device)
    weights = write_tiny_weights(tmp_path / "tiny.safetensors", temporal=True)
    plan = plan_jobs([str(tmp_path / "in")], str(tmp_path / "out"), ext="mkv")
    reporter = Reporter(json_file=tmp_path / "log.jsonl")
    with reporter:
        code = run_jobs(
            plan, OPTS, EncodeOptions(), reporter, Scale(segment=0, devices=["cpu", "cpu"]),
            weights=str(weights), device="cpu",
        )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err
    ev = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    failed = sorted(Path(e["file"]).name for e in ev if e["event"] == "file_failed")
    assert failed == ["a.mp4", "b.mp4", "c.mp4"]
    assert all("every worker failed" in e["error"] for e in ev if e["event"] == "file_failed")
    assert len([e for e in ev if e["event"] == "warning" and "retired" in e["message"]]) == 1
    assert not (tmp_path / "out").exists()  # the folder made for them went with them
