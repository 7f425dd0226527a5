"""``adcvsr upscale`` with --segment, --restart and --devices, through the installed script."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from test_segmented import assert_same, make_shots
from tiny import cli_env, write_tiny_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny-vsr.safetensors"
    return write_tiny_weights(path, temporal=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return cli_env(tmp_path_factory.mktemp("cache"))


def adcvsr(*args: object, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("adcvsr")
    assert exe is not None, "the adcvsr console script is not installed (pip install -e .)"
    return subprocess.run(
        [exe, *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def events(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_devices_cpu_cpu_equals_one_worker(tmp_path, weights, env):
    src = make_shots(tmp_path / "in.mp4", [20, 14])
    common = ["--weights", weights, "--chunk", "6", "--chunk-overlap", "2", "--crf", "0"]
    common += ["--preset", "ultrafast", "--json"]
    two = adcvsr(
        "upscale",
        src,
        "two.mkv",
        *common,
        "--devices",
        "cpu,cpu",
        "--segment",
        "8",
        env=env,
        cwd=tmp_path,
    )
    assert two.returncode == 0, two.stderr
    one = adcvsr(
        "upscale",
        src,
        "one.mkv",
        *common,
        "--device",
        "cpu",
        "--segment",
        "0",
        env=env,
        cwd=tmp_path,
    )
    assert one.returncode == 0, one.stderr
    assert_same(tmp_path / "two.mkv", tmp_path / "one.mkv", src)
    ev = events(two.stderr)
    segs = [e for e in ev if e["event"] == "segment"]
    assert len(segs) >= 3 and {e["worker"] for e in segs} <= {"cpu worker 0", "cpu worker 1"}
    assert [e for e in ev if e["event"] == "segments"][0]["total"] == len(segs)


def test_changed_options_refused_with_a_restart_command_that_works(tmp_path, weights, env):
    src = make_shots(tmp_path / "in.mp4", [30], bframes=False)
    folder = tmp_path / ".out.mkv.adcvsr-work"
    base = ["upscale", "in.mp4", "out.mkv", "--weights", weights, "--device", "cpu"]
    base += ["--chunk", "6", "--chunk-overlap", "2", "--segment", "8"]
    # An unfinished run: its work folder with the plan and no segment done (as after a crash).
    from adcvsr_cli.engine.options import UpscaleOptions
    from adcvsr_cli.media import EncodeOptions
    from adcvsr_cli.pipeline import load_model
    from adcvsr_cli.segmented import _prepare

    up = load_model(str(weights), device="cpu")
    folder.mkdir()
    job = _prepare(
        str(src),
        str(tmp_path / "out.mkv"),
        folder,
        up,
        UpscaleOptions(chunk=6, chunk_overlap=2),
        EncodeOptions(),
        8,
        lambda e: None,
    )
    assert job is not None and (folder / "manifest.json").is_file()
    r = adcvsr(*base, "--color-fix", "none", env=env, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    msg = " ".join(r.stderr.split())
    assert "--color-fix was 'adain', now 'none'" in msg and "--restart" in msg
    command = msg[msg.index("adcvsr upscale") :].strip()
    assert not (tmp_path / "out.mkv").exists()
    again = subprocess.run(
        shlex.split(command), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "out.mkv").is_file() and not folder.exists()


def test_ray_missing_names_the_extra(tmp_path, weights, env):
    src = make_shots(tmp_path / "in.mp4", [12], bframes=False)
    fake = tmp_path / "noray"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    e = dict(env, PYTHONPATH=os.pathsep.join([str(fake), env.get("PYTHONPATH", "")]))
    r = adcvsr(
        "upscale",
        src,
        "out.mkv",
        "--weights",
        weights,
        "--device",
        "cpu",
        "--ray",
        env=e,
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    assert "pip install 'adcvsr[ray]'" in " ".join(r.stderr.split())
    assert "Traceback" not in r.stderr and not (tmp_path / "out.mkv").exists()


def test_ray_local_cluster_equals_one_process(tmp_path, weights, env):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'adcvsr[ray]')")
    src = make_shots(tmp_path / "in.mp4", [14, 10])
    common = ["--weights", weights, "--device", "cpu", "--chunk", "6", "--chunk-overlap", "2"]
    common += ["--crf", "0", "--preset", "ultrafast"]
    e = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}  # a local cluster
    r = adcvsr(
        "upscale", src, "ray.mkv", *common, "--ray", "--segment", "8", "--json", env=e, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    one = adcvsr("upscale", src, "one.mkv", *common, "--segment", "0", env=env, cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert_same(tmp_path / "ray.mkv", tmp_path / "one.mkv", src)
    workers = {ev["worker"] for ev in events(r.stderr) if ev["event"] == "segment"}
    assert workers and all(w.startswith("ray actor ") for w in workers)


def batch_inputs(folder: Path) -> list[str]:
    """Three short files, one long one (segments at --segment 8) and one that is not a video."""
    folder.mkdir()
    make_shots(folder / "a.mp4", [10], bframes=False)
    make_shots(folder / "b.mp4", [6, 5])
    make_shots(folder / "c.mp4", [12], bframes=False)
    make_shots(folder / "long.mp4", [20, 14])
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 8)
    return ["a", "b", "broken", "c", "long"]


def table_order(stderr: str, names: list[str]) -> list[str]:
    """The order in which the summary table lists the inputs."""
    table = stderr[stderr.index("adcvsr summary") :]
    return sorted(names, key=lambda n: table.index(f"{n}.mp4"))


def test_batch_on_two_cpu_workers_equals_one_process(tmp_path, weights, env):
    names = batch_inputs(tmp_path / "in")
    common = ["--weights", weights, "--chunk", "6", "--chunk-overlap", "2", "--crf", "0"]
    common += ["--preset", "ultrafast", "--ext", "mkv"]
    two = adcvsr(
        "upscale", "in", "two", *common, "--devices", "cpu,cpu", "--segment", "8",
        "--json-file", "two.jsonl", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert two.returncode == 3, two.stderr  # one file failed, the others were written
    one = adcvsr(
        "upscale", "in", "one", *common, "--device", "cpu", "--segment", "0",
        "--json-file", "one.jsonl", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert one.returncode == 3, one.stderr
    for n in ("a", "b", "c", "long"):
        assert_same(
            tmp_path / "two" / f"{n}.mkv",
            tmp_path / "one" / f"{n}.mkv",
            tmp_path / "in" / f"{n}.mp4",
        )
    assert not (tmp_path / "two" / "broken.mkv").exists()
    ev = [json.loads(x) for x in (tmp_path / "two.jsonl").read_text().splitlines()]
    failed = [e for e in ev if e["event"] == "file_failed"]
    assert [Path(e["file"]).name for e in failed] == ["broken.mp4"] and failed[0]["exit_code"] == 1
    done = {Path(e["file"]).stem: e for e in ev if e["event"] == "file_done"}
    assert sorted(done) == ["a", "b", "c", "long"]
    # Short files are one task each, on one worker; the long one's segments are shared out.
    assert all(len(done[n]["workers"]) == 1 for n in "abc")
    segs = [e for e in ev if e["event"] == "segment"]
    assert len(segs) >= 3 and {Path(e["file"]).stem for e in segs} == {"long"}
    tasks = [done[n]["workers"][0] for n in "abc"] + [e["worker"] for e in segs]
    assert set(tasks) == {"cpu worker 0", "cpu worker 1"}, tasks  # the batch used both workers
    # Per-file progress streams end at each file's frame count, whatever worker ran them.
    last = {}
    for e in ev:
        if e["event"] == "progress":
            last[Path(e["file"]).stem] = e["frames_done"]
    assert last == {"a": 10, "b": 11, "c": 12, "long": 34}
    overall = [e for e in ev if e["event"] == "run_progress"]
    assert [e["files_finished"] for e in overall] == [1, 2, 3, 4, 5]
    assert overall[-1]["done"] == 4 and overall[-1]["failed"] == 1
    assert overall[-1]["frames"] == 10 + 11 + 12 + 34
    summary = [e for e in ev if e["event"] == "summary"][0]
    assert (summary["done"], summary["failed"], summary["exit_code"]) == (4, 1, 3)
    # The table lists the files in the batch's order, as a single process does.
    assert table_order(two.stderr, names) == table_order(one.stderr, names) == names


def test_batch_skip_existing_and_resume_on_two_workers(tmp_path, weights, env):
    """--skip-existing skips finished files; an interrupted long file resumes its segments."""
    batch_inputs(tmp_path / "in")
    (tmp_path / "in" / "broken.mp4").unlink()
    common = ["--weights", weights, "--chunk", "6", "--chunk-overlap", "2", "--crf", "0"]
    common += ["--preset", "ultrafast", "--ext", "mkv", "--segment", "8", "--json"]
    first = adcvsr("upscale", "in", "out", *common, "--devices", "cpu,cpu", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    shutil.copy(tmp_path / "out" / "long.mkv", tmp_path / "reference.mkv")
    # As after a crash in the long file: two finished files, the long one's work folder with
    # its first two segments finished and its output not written yet.
    from adcvsr_cli.engine.options import UpscaleOptions
    from adcvsr_cli.media import EncodeOptions
    from adcvsr_cli.pipeline import load_model
    from adcvsr_cli.segmented import open_long, run_segment

    for n in ("b", "c", "long"):
        (tmp_path / "out" / f"{n}.mkv").unlink()
    up = load_model(str(weights), device="cpu")
    enc = EncodeOptions(crf=0, preset="ultrafast")
    long = open_long(
        str(tmp_path / "in" / "long.mp4"), str(tmp_path / "out" / "long.mkv"), up,
        UpscaleOptions(chunk=6, chunk_overlap=2), enc, segment=8, restart=False, emit=lambda e: None,
    )  # fmt: skip
    assert long is not None and len(long.todo) >= 3
    for seg in long.todo[:2]:
        long.on_done(seg, run_segment(long.job, up, seg, lambda e: None, threading.Event()), "test")
    long.abandon()
    again = adcvsr(
        "upscale", "in", "out", *common, "--devices", "cpu,cpu", "--skip-existing", env=env, cwd=tmp_path
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    ev = events(again.stderr)
    assert [Path(e["file"]).name for e in ev if e["event"] == "file_skipped"] == ["a.mp4"]
    assert sorted(Path(e["file"]).stem for e in ev if e["event"] == "file_done") == [
        "b",
        "c",
        "long",
    ]
    segments = [e for e in ev if e["event"] == "segments"][0]
    assert segments["done"] == 2 and segments["todo"] == segments["total"] - 2
    assert len([e for e in ev if e["event"] == "segment"]) == segments["total"] - 2
    assert_same(
        tmp_path / "out" / "long.mkv", tmp_path / "reference.mkv", tmp_path / "in" / "long.mp4"
    )
    assert not (tmp_path / "out" / ".long.mkv.adcvsr-work").exists()


def test_ray_batch_equals_one_process_and_segment_0_runs_on_the_actors(tmp_path, weights, env):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'adcvsr[ray]')")
    batch_inputs(tmp_path / "in")
    (tmp_path / "in" / "long.mp4").unlink()
    common = ["--weights", weights, "--device", "cpu", "--chunk", "6", "--chunk-overlap", "2"]
    common += ["--crf", "0", "--preset", "ultrafast", "--ext", "mkv", "--segment", "0"]
    e = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}  # a local cluster
    r = adcvsr("upscale", "in", "ray", *common, "--ray", "--json", env=e, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    one = adcvsr("upscale", "in", "one", *common, env=env, cwd=tmp_path)
    assert one.returncode == 3, one.stderr
    for n in ("a", "b", "c"):
        assert_same(
            tmp_path / "ray" / f"{n}.mkv",
            tmp_path / "one" / f"{n}.mkv",
            tmp_path / "in" / f"{n}.mp4",
        )
    ev = events(r.stderr)
    assert [Path(x["file"]).name for x in ev if x["event"] == "file_failed"] == ["broken.mp4"]
    workers = [w for x in ev if x["event"] == "file_done" for w in x["workers"]]
    assert len(workers) == 3 and all(w.startswith("ray actor ") for w in workers), workers


def test_interrupted_batch_on_two_workers_resumes(tmp_path, weights, env):
    """Ctrl-C in a batch on two workers: exit 130, nothing unfinished published; the rerun
    skips the finished files and continues the long one from its finished segments."""
    (tmp_path / "in").mkdir()
    make_shots(tmp_path / "in" / "a.mp4", [10], bframes=False)
    make_shots(tmp_path / "in" / "long.mp4", [30, 26], bframes=False)
    args = ["upscale", "in", "out", "--weights", weights, "--chunk", "6", "--chunk-overlap", "2"]
    args += ["--crf", "0", "--preset", "ultrafast", "--ext", "mkv", "--segment", "8", "--json"]
    args += ["--devices", "cpu,cpu"]
    exe = shutil.which("adcvsr")
    assert exe is not None
    proc = subprocess.Popen(
        [exe, *map(str, args)], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # wait for the long file's first finished segment
        seen.append(line)
        if line.startswith("{") and json.loads(line)["event"] == "segment":
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, "".join(seen) + rest
    assert not (tmp_path / "out" / "long.mkv").exists()
    folder = tmp_path / "out" / ".long.mkv.adcvsr-work"
    kept = json.loads((folder / "manifest.json").read_text())
    assert kept["done"] and not (folder / "lock").exists()
    leftovers = [
        p.name for p in (tmp_path / "out").iterdir() if p.name not in ("a.mkv", folder.name)
    ]
    assert leftovers == []
    again = adcvsr(*args, "--skip-existing", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    ev = events(again.stderr)
    segments = [e for e in ev if e["event"] == "segments"][0]
    assert segments["done"] >= 1 and segments["todo"] == segments["total"] - segments["done"]
    assert len([e for e in ev if e["event"] == "segment"]) == segments["todo"]
    one = adcvsr(
        "upscale", "in/long.mp4", "one.mkv", *args[3:-2], "--segment", "0", "--device", "cpu",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert_same(tmp_path / "out" / "long.mkv", tmp_path / "one.mkv", tmp_path / "in" / "long.mp4")
