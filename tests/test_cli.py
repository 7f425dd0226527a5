"""The ``adcvsr`` command line.

Two layers: Typer's CliRunner, in process, for parsing and messages (fast; a monkeypatched
``load_model`` proves when no model is loaded), and the INSTALLED console script in a
subprocess for the real thing (pipes, signals, exit codes, terminals). The network is a tiny
random-init native checkpoint, the media are small clips generated with PyAV.

Budget: the whole module under 120 s on 2 CPU cores (``pytest tests/test_cli.py
--durations=10``). Subprocesses run with OMP_NUM_THREADS=1: on a 2-core machine that also
runs other work, torch's two spinning threads are several times slower than one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from media import frame_times, make_image, make_video, packets
from tiny import cli_env, write_tiny_weights
from typer.testing import CliRunner

from adcvsr_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXIT_CODES = (
    "Exit codes: 0 all done, 1 error, 2 usage error, 3 some files of a batch failed, "
    "130 interrupted"
)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def adcvsr_bin() -> str:
    exe = shutil.which("adcvsr")
    if exe is None:
        pytest.fail("the adcvsr console script is not installed (pip install -e .)")
    return exe


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.safetensors")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return cli_env(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as users have them: videos in a tree, a corrupt one, a text file."""
    d = tmp_path_factory.mktemp("clips")
    make_video(d / "a.mp4", frames=10)
    make_video(d / "b.mkv", frames=8, audio="aac", seed=1)
    (d / "sub").mkdir()
    make_video(d / "sub" / "c.mp4", frames=6, seed=2)
    (d / "bad.mp4").write_bytes(
        np.random.default_rng(1).integers(0, 256, 20_000, np.uint8).tobytes()
    )
    (d / "notes.txt").write_text("not a video\n")
    return d


@pytest.fixture(scope="module")
def big_mkv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Over 1 MB (a PCM track interleaved with 24 frames at 4 fps), so that the demuxer's
    probe buffer cannot hold the whole file and hide pipe problems."""
    p = tmp_path_factory.mktemp("big") / "big.mkv"
    make_video(p, frames=24, rate=4, fmt="matroska", audio="pcm_s16le", audio_seconds=6.0)
    assert p.stat().st_size >= 1_000_000
    return p


def run(
    exe: str, *args: Any, env: dict[str, str], timeout: float = 120, **kw: Any
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [exe, *map(str, args)], env=env, capture_output=True, timeout=timeout, **kw
    )


def tiny(weights: Path) -> list[str]:
    return ["--weights", str(weights), "--device", "cpu"]


def jsonl(text: str) -> list[dict[str, Any]]:
    """Every line must be one JSON object with an event name and a time."""
    events = []
    for line in text.splitlines():
        ev = json.loads(line)
        assert isinstance(ev, dict) and isinstance(ev["event"], str), line
        assert isinstance(ev["time"], float | int), line
        events.append(ev)
    return events


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def video_facts(path: Path | str) -> tuple[int, int, int]:
    """(width, height, decoded frames) of a written file."""
    with av.open(str(path)) as c:
        n = sum(1 for _ in c.decode(video=0))
        cc = c.streams.video[0].codec_context
        return cc.width, cc.height, n


def no_part_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".part" in p.name or ".adcvsr-" in p.name]


def assert_quiet_failure(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr


class NoModel:
    """Stands in for ``pipeline.load_model`` where no model may be loaded."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *a: Any, **kw: Any) -> Any:
        self.calls += 1
        raise AssertionError("load_model was called")


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> NoModel:
    import adcvsr_cli.pipeline as pipeline
    import adcvsr_cli.weights as weights_mod

    stub = NoModel()
    monkeypatch.setattr(pipeline, "load_model", stub)
    monkeypatch.setattr(weights_mod, "resolve_weights", stub)
    return stub


runner = CliRunner()


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", ["", "upscale", "convert", "models", "download", "info"])
def test_help_of_every_command_through_the_console_script(
    adcvsr_bin: str, env: dict[str, str], command: str
) -> None:
    args = [command, "--help"] if command else ["--help"]
    r = run(adcvsr_bin, *args, env=env, timeout=60)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert out.lstrip().startswith("Usage: adcvsr")
    if command:
        assert "Example" in out
        assert f"adcvsr {command}" in out.split("Example", 1)[1]
    if command in ("", "upscale"):
        assert EXIT_CODES in " ".join(out.split())


def _flat(help_text: str) -> str:
    """Help text with rich's panel borders taken out and whitespace runs made one space."""
    return " ".join(help_text.replace("│", " ").split())


def test_help_is_drawn_in_panels_that_fit_80_columns(adcvsr_bin: str, env: dict[str, str]) -> None:
    """Without a terminal (piped, as here): rich's panels at 80 columns; every option of every
    command documented in its panel, no rich markup eaten, no internal names; ``adcvsr --help``
    lists each command with its whole one-line summary."""
    import typer.main

    from adcvsr_cli.cli import options

    group = typer.main.get_command(app)
    top = run(adcvsr_bin, "--help", env=env, timeout=60).stdout.decode()
    for name, cmd in group.commands.items():
        summary = " ".join(cmd.help.split("\n\n", 1)[0].split())
        assert f"{name} {summary}" in _flat(top), name
        r = run(adcvsr_bin, name, "--help", env=env, timeout=60)
        out = r.stdout.decode()
        assert r.returncode == 0 and r.stderr == b"", r.stderr.decode()
        assert max(map(len, out.splitlines())) <= 80, name
        assert "\x1b" not in out and "\b" not in out and "<bool>" not in out, name
        for param in cmd.params:
            assert param.help, f"adcvsr {name}: {param.name} has no help text"
            assert " ".join(param.help.split()).replace("\\[", "[") in _flat(out), param.name
            if param.param_type_name == "option":
                assert f"╭─ {getattr(param, 'rich_help_panel', None) or 'Options'} " in out
        for internal in ("issue", "docs/", "force=", "EncodeOptions", "UpscaleArgs", "-- --"):
            assert internal not in out, (name, internal)
    upscale = run(adcvsr_bin, "upscale", "--help", env=env, timeout=60).stdout.decode()
    panels = {v for k, v in vars(options).items() if k.isupper() and isinstance(v, str)}
    assert panels and all(f"╭─ {panel} " in upscale for panel in panels), panels
    assert "pip install 'adcvsr[ray]'" in _flat(upscale)


def test_upscale_help_shows_the_contract(adcvsr_bin: str, env: dict[str, str]) -> None:
    out = run(adcvsr_bin, "upscale", "-h", env=env, timeout=60).stdout.decode()
    assert "Usage: adcvsr upscale [OPTIONS] INPUT... OUTPUT" in out
    for flag in (
        "--recursive",
        "--glob",
        "--exclude",
        "--suffix",
        "--ext",
        "--format",
        "--skip-existing",
        "--overwrite",
        "-y",
        "--quiet",
        "--verbose",
        "--json",
        "--json-file",
        "--dry-run",
        "--tile",
        "--weights",
        "--device",
    ):
        assert flag in out, flag
    assert "cat in.mkv | adcvsr upscale - - --format matroska > out.mkv" in out


def test_readme_documents_the_exit_codes() -> None:
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert EXIT_CODES in text


def test_version() -> None:
    from adcvsr_cli import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"adcvsr {__version__}"


# ----------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tile", "17"], "multiple of 16"),
        (["--tile", "big"], "--tile must be a number of pixels, 0 or auto"),
        (["--scale", "0"], "--scale must be a positive number"),
        (["--crf", "99"], "--crf 99 is out of range"),
        (["--color-fix", "sepia"], "--color-fix 'sepia' is not one of"),
        (["--precision", "fp8"], "--precision 'fp8' is not one of"),
        (["--chunk", "4", "--chunk-overlap", "4"], "overlap"),
        (["-e", "novalue"], "key=value"),
    ],
)
def test_bad_options_are_usage_errors(
    no_model: NoModel, clips: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    r = runner.invoke(app, ["upscale", str(clips / "a.mp4"), str(tmp_path / "o.mkv"), *extra])
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert r.stderr.startswith("adcvsr: error: ")
    assert no_model.calls == 0 and not list(tmp_path.iterdir())


def test_a_container_that_cannot_stream_to_stdout_is_a_usage_error(
    no_model: NoModel, clips: Path
) -> None:
    r = runner.invoke(app, ["upscale", str(clips / "a.mp4"), "-", "--format", "avi"])
    assert r.exit_code == 2
    # It says what to use instead.
    assert "--format avi cannot be written to a pipe" in r.stderr
    assert "matroska" in r.stderr and "mp4" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["only-one.mp4"], "give at least one INPUT and an OUTPUT"),
        (["a.mp4", "b.mp4", "-"], "several inputs cannot go to standard output"),
        (["a.mp4", "b.mp4", "out.mkv"], "looks like a file name"),
        (["-", "a.mp4", "out"], "cannot be combined"),
    ],
)
def test_bad_paths_are_usage_errors(
    no_model: NoModel,
    clips: Path,
    tmp_path: Path,
    paths: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(clips / "a.mp4", "a.mp4")
    shutil.copy(clips / "a.mp4", "b.mp4")
    r = runner.invoke(app, ["upscale", *paths])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]


def test_missing_input_exits_1_naming_it_without_loading_a_model(
    no_model: NoModel, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-clip.mp4"
    r = runner.invoke(app, ["upscale", str(missing), str(tmp_path / "o.mkv")])
    assert r.exit_code == 1
    assert "no-such-clip.mp4" in r.stderr and "no such file" in r.stderr
    assert no_model.calls == 0


def test_existing_output_is_refused_before_loading_a_model(
    no_model: NoModel, clips: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o.mkv"
    out.write_bytes(b"precious")
    r = runner.invoke(app, ["upscale", str(clips / "a.mp4"), str(out)])
    assert r.exit_code == 2
    assert "output exists" in r.stderr and "--overwrite" in r.stderr
    assert out.read_bytes() == b"precious" and no_model.calls == 0


def test_output_that_is_the_input_is_a_usage_error(
    no_model: NoModel, clips: Path, tmp_path: Path
) -> None:
    src = tmp_path / "a.mp4"
    shutil.copy(clips / "a.mp4", src)
    before = sha256(src)
    for extra in ([], ["-y"]):
        r = runner.invoke(app, ["upscale", str(src), str(tmp_path / "." / "a.mp4"), *extra])
        assert r.exit_code == 2 and "is the input file" in r.stderr
    assert sha256(src) == before and no_model.calls == 0


def test_a_folder_without_media_says_so(no_model: NoModel, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "readme.txt").write_text("x")
    r = runner.invoke(app, ["upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0
    events = jsonl(r.stderr)
    assert [e["event"] for e in events] == ["run_start", "warning", "summary"]
    assert "no video or image files found (1 other file(s) ignored)" in events[1]["message"]
    assert events[-1]["ignored"] == 1 and no_model.calls == 0
    assert not (tmp_path / "out").exists()


def test_unknown_weights_name_lists_the_valid_names(clips: Path, tmp_path: Path) -> None:
    r = runner.invoke(
        app, ["upscale", str(clips / "a.mp4"), str(tmp_path / "o.mkv"), "--weights", "nope-x9"]
    )
    assert r.exit_code == 1
    assert "nope-x9" in r.stderr and "adcsr-x4" in r.stderr
    assert not (tmp_path / "o.mkv").exists() and not no_part_files(tmp_path)


def test_missing_weights_file_stops_a_batch_once(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = runner.invoke(
        app,
        [
            "upscale",
            str(clips),
            str(out),
            "--exclude",
            "bad.mp4",
            "--weights",
            str(tmp_path / "w.safetensors"),
            "--json",
        ],
    )
    assert r.exit_code == 1
    events = jsonl(r.stderr)
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1 and "w.safetensors" in errors[0]["message"]
    assert events[-1]["event"] == "summary" and events[-1]["exit_code"] == 1
    assert not any(e["event"] == "file_done" for e in events)


# ----------------------------------------------------------------------------- dry run


def test_dry_run_loads_no_model_and_writes_nothing(
    adcvsr_bin: str, env: dict[str, str], weights: Path, clips: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    log = tmp_path / "log.jsonl"
    before = {p: p.stat().st_mtime_ns for p in clips.rglob("*")}
    r = run(
        adcvsr_bin,
        "upscale",
        clips,
        out,
        "-r",
        "--dry-run",
        "--exclude",
        "bad.mp4",
        "--weights",
        weights,
        "--device",
        "cpu",
        "--tile",
        "64",
        "--json-file",
        log,
        env=env,
    )
    text = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert not out.exists()
    assert {p: p.stat().st_mtime_ns for p in clips.rglob("*")} == before
    for name in ("a.mp4", "b.mkv", "c.mp4"):
        assert f"{name} -> " in text
    assert "64x48" in text  # input size
    assert "256x192 mp4" in text and "256x192 mkv" in text  # output size and container
    assert "h264" in text and "aac" in text  # input streams
    assert "cpu fp32" in text and "tiles 64 px (1 per frame, overlap 32)" in text
    assert "1 frame per network call" in text and "chunks" in text and "GiB" in text
    assert "1 non-media file(s) would be skipped" in text
    plans = [e for e in jsonl(log.read_text()) if e["event"] == "plan"]
    assert sorted(Path(p["input"]).name for p in plans) == ["a.mp4", "b.mkv", "c.mp4"]
    for p in plans:
        assert p["output_size"] == [256, 192] and p["tile"] == 64 and p["estimated_peak_bytes"] > 0


def test_dry_run_in_process_reports_problems_per_file(
    no_model: NoModel, clips: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mp4").write_bytes(b"done before")
    r = runner.invoke(app, ["upscale", str(clips), str(out), "--dry-run", "--json"])
    assert r.exit_code == 3  # bad.mp4 would fail
    events = jsonl(r.stderr)
    by_name = {
        Path(e.get("input") or e.get("file")).name: e for e in events if "file" in e or "input" in e
    }
    assert by_name["a.mp4"]["skip"] == "output exists"
    assert by_name["bad.mp4"]["event"] == "file_failed"
    assert events[-1]["event"] == "summary" and events[-1]["dry_run"] is True
    assert (events[-1]["would_run"], events[-1]["skipped"], events[-1]["failed"]) == (1, 1, 1)
    assert no_model.calls == 0 and r.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4"]


def test_glob_exclude_suffix_ext_reach_the_plan(
    no_model: NoModel, clips: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["upscale", str(clips), str(out), "-r", "--dry-run", "--json", "--suffix", "-up"]
    r = runner.invoke(app, [*args, "--glob", "*.mp4", "--exclude", "bad*", "--ext", "mov"])
    assert r.exit_code == 0, r.output
    plans = [e for e in jsonl(r.stderr) if e["event"] == "plan"]
    got = sorted(
        (Path(p["input"]).name, Path(p["output"]).relative_to(out).as_posix()) for p in plans
    )
    assert got == [("a.mp4", "a-up.mov"), ("c.mp4", "sub/c-up.mov")]
    assert all(p["output_container"] == "mov" for p in plans)


def test_dry_run_of_a_pipe_prints_to_stderr(no_model: NoModel) -> None:
    r = runner.invoke(app, ["upscale", "-", "-", "--dry-run", "--format", "nut"], input=b"")
    assert r.exit_code == 0
    assert r.stdout == ""  # standard output is where the video would go
    assert "output  nut" in r.stderr and "standard input" in r.stderr


# ----------------------------------------------------------------------------- batches


@pytest.fixture(scope="module")
def first_batch(
    adcvsr_bin: str, env: dict[str, str], weights: Path, clips: Path, tmp_path_factory
) -> tuple[subprocess.CompletedProcess, Path, Path]:
    out = tmp_path_factory.mktemp("batch") / "up"  # does not exist yet: created
    log = out.parent / "log.jsonl"
    before = {p: sha256(p) for p in clips.rglob("*") if p.is_file()}
    r = run(
        adcvsr_bin,
        "upscale",
        clips,
        out,
        "--recursive",
        "--suffix",
        "_x4",
        "--ext",
        "mkv",
        "--json-file",
        log,
        *tiny(weights),
        env=env,
    )
    assert {p: sha256(p) for p in clips.rglob("*") if p.is_file()} == before
    return r, out, log


def test_folder_batch_with_a_corrupt_file(first_batch, clips: Path) -> None:
    r, out, _ = first_batch
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert_quiet_failure(err)
    # The corrupt file is named with its cause; the others are done.
    bad_line = [ln for ln in err.splitlines() if "bad.mp4" in ln and "adcvsr: error:" in ln]
    assert bad_line and "not a recognised media file" in bad_line[0]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a_x4.mkv",
        "b_x4.mkv",
        "sub/c_x4.mkv",
    ]
    assert video_facts(out / "a_x4.mkv") == (256, 192, 10)
    assert video_facts(out / "b_x4.mkv") == (256, 192, 8)
    assert video_facts(out / "sub" / "c_x4.mkv") == (256, 192, 6)
    assert len(packets(out / "b_x4.mkv", "audio")) == len(packets(clips / "b.mkv", "audio"))
    assert not no_part_files(out)
    # The summary table, and no progress bars or colours off a terminal.
    assert "adcvsr summary" in err
    assert "done 3, skipped 0, failed 1, not media 1; 24 frames" in err
    assert "\x1b[" not in err and "\r" not in err


def test_json_lines_of_a_batch(first_batch, clips: Path) -> None:
    _, out, log = first_batch
    events = jsonl(log.read_text())
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_start" and kinds[-1] == "summary"
    assert events[0]["files"] == 4 and events[0]["ignored"] == 1
    assert kinds.count("model") == 1  # loaded once for the whole batch
    starts = [e for e in events if e["event"] == "start"]
    done = {Path(e["file"]).name: e for e in events if e["event"] == "file_done"}
    failed = [e for e in events if e["event"] == "file_failed"]
    assert [(Path(e["file"]).name, e["index"], e["files"]) for e in starts] == [
        ("a.mp4", 1, 4),
        ("b.mkv", 2, 4),
        ("c.mp4", 4, 4),  # bad.mp4 was number 3
    ]
    assert all(
        (e["width"], e["height"], e["out_width"], e["out_height"]) == (64, 48, 256, 192)
        for e in starts
    )
    assert {k: v["frames"] for k, v in done.items()} == {"a.mp4": 10, "b.mkv": 8, "c.mp4": 6}
    assert all(Path(v["output"]).exists() for v in done.values())
    assert len(failed) == 1 and failed[0]["file"].endswith("bad.mp4")
    assert failed[0]["exit_code"] == 1 and "not a recognised media file" in failed[0]["error"]
    for name, ev in done.items():
        prog = [e for e in events if e["event"] == "progress" and Path(e["file"]).name == name]
        assert prog and prog[-1]["frames_done"] == ev["frames"], name
        assert prog[-1]["eta_seconds"] == 0 and prog[-1]["fps"] > 0
        assert all(p["frames_done"] <= (p["frames_total"] or 10**9) for p in prog)
    s = events[-1]
    assert (s["done"], s["skipped"], s["failed"], s["ignored"], s["frames"]) == (3, 0, 1, 1, 24)
    assert s["exit_code"] == 3 and s["interrupted"] is False


def test_rerun_skips_everything(
    first_batch, adcvsr_bin: str, env: dict[str, str], weights: Path, clips: Path
) -> None:
    _, out, _ = first_batch
    outputs = sorted(p for p in out.rglob("*") if p.is_file())
    stamps = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in outputs}
    args = (
        "upscale",
        clips,
        out,
        "-r",
        "--suffix",
        "_x4",
        "--ext",
        "mkv",
        "--json",
        *tiny(weights),
    )
    r = run(adcvsr_bin, *args, "--exclude", "bad.mp4", env=env)
    assert r.returncode == 0, r.stderr.decode()
    events = jsonl(r.stderr.decode())
    assert "model" not in [e["event"] for e in events]  # nothing to do: no model loaded
    s = events[-1]
    assert (s["event"], s["done"], s["skipped"], s["failed"]) == ("summary", 0, 3, 0)
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in outputs} == stamps


def test_rerun_left_with_a_broken_file_loads_no_model(
    first_batch, no_model: NoModel, weights: Path, clips: Path
) -> None:
    _, out, _ = first_batch
    outputs = sorted(p for p in out.rglob("*") if p.is_file())
    stamps = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in outputs}
    args = ["upscale", str(clips), str(out), "-r", "--suffix", "_x4", "--ext", "mkv"]
    r = runner.invoke(app, [*args, "--json", *tiny(weights)])
    assert r.exit_code == 3  # it fails again, found before any model is loaded
    events = jsonl(r.stderr)
    assert [Path(e["file"]).name for e in events if e["event"] == "file_failed"] == ["bad.mp4"]
    assert no_model.calls == 0
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in outputs} == stamps


def test_overwrite_rewrites_the_outputs(
    first_batch, adcvsr_bin: str, env: dict[str, str], weights: Path, clips: Path
) -> None:
    _, out, _ = first_batch
    outputs = sorted(p for p in out.rglob("*") if p.is_file())
    stamps = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in outputs}
    r = run(
        adcvsr_bin,
        "upscale",
        clips,
        out,
        "-r",
        "--suffix",
        "_x4",
        "--ext",
        "mkv",
        "--exclude",
        "bad.mp4",
        "-y",
        "-q",
        *tiny(weights),
        env=env,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stderr == b""  # --quiet: nothing but errors
    for p in outputs:
        mtime, ino = stamps[p]
        assert p.stat().st_ino != ino and p.stat().st_mtime_ns > mtime, p  # replaced whole
    assert video_facts(out / "a_x4.mkv") == (256, 192, 10)
    assert not no_part_files(out)


@pytest.fixture
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_model_is_loaded_once_and_verbose_says_more(
    monkeypatch: pytest.MonkeyPatch, weights: Path, clips: Path, tmp_path: Path, one_thread: None
) -> None:
    import adcvsr_cli.pipeline as pipeline

    calls = []
    real = pipeline.load_model

    def counting(*a: Any, **kw: Any) -> Any:
        calls.append(kw.get("weights"))
        return real(*a, **kw)

    monkeypatch.setattr(pipeline, "load_model", counting)
    src = [str(clips / "a.mp4"), str(clips / "sub" / "c.mp4")]
    r = runner.invoke(
        app, ["upscale", *src, str(tmp_path / "o"), "-v", "--chunk", "8", *tiny(weights)]
    )
    assert r.exit_code == 0, r.output
    assert calls == [str(weights)]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.mp4", "c.mp4"]
    assert "model " in r.stderr and "loaded in" in r.stderr  # -v
    assert "plan: device cpu, fp32" in r.stderr
    assert "64x48 -> 256x192" in r.stderr


# ----------------------------------------------------------------------------- pipes


def test_stdin_to_stdout_matroska(
    adcvsr_bin: str, env: dict[str, str], weights: Path, big_mkv: Path
) -> None:
    # cat big.mkv | adcvsr upscale - - --format matroska --json > out.mkv
    with open(big_mkv, "rb") as f:
        data = f.read()
    p = subprocess.Popen(
        [adcvsr_bin, "upscale", "-", "-", "--format", "matroska", "--json", *tiny(weights)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    out, err = p.communicate(data, timeout=120)
    assert p.returncode == 0, err.decode()
    assert out[:4] == b"\x1a\x45\xdf\xa3"  # EBML: the video, and nothing but the video
    events = jsonl(err.decode())  # every stderr line is JSON
    assert [e["event"] for e in events][-2:] == ["file_done", "summary"]
    assert events[-1]["done"] == 1 and events[-1]["frames"] == 24
    result = Path(env["ADCVSR_CACHE"]).parent / "piped.mkv"
    result.write_bytes(out)
    assert video_facts(result)[:2] == (256, 192)
    want = frame_times(big_mkv)
    got = frame_times(result)
    assert len(got) == len(want) == 24
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 0.001
    audio_in, audio_out = packets(big_mkv, "audio"), packets(result, "audio")
    assert len(audio_out) == len(audio_in)
    assert [a[2] for a in audio_out] == [a[2] for a in audio_in]  # copied, not re-encoded


def test_file_to_stdout_fragmented_mp4(
    adcvsr_bin: str, env: dict[str, str], weights: Path, clips: Path, tmp_path: Path
) -> None:
    r = run(
        adcvsr_bin,
        "upscale",
        clips / "a.mp4",
        "-",
        "--format",
        "mp4",
        "-q",
        *tiny(weights),
        env=env,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout[4:8] == b"ftyp" and b"moof" in r.stdout  # fragmented
    (tmp_path / "o.mp4").write_bytes(r.stdout)
    assert video_facts(tmp_path / "o.mp4") == (256, 192, 10)


def make_y4m(path: Path, frames: int) -> Path:
    with av.open(str(path), "w", format="yuv4mpegpipe") as c:
        s = c.add_stream("rawvideo", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            rgb = np.full((48, 64, 3), 20 * i % 256, np.uint8)
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    return path


def test_y4m_from_stdin_to_mpegts_on_stdout(
    adcvsr_bin: str, env: dict[str, str], weights: Path, tmp_path: Path
) -> None:
    data = make_y4m(tmp_path / "in.y4m", 7).read_bytes()
    r = run(
        adcvsr_bin, "upscale", "-", "-", "--format", "mpegts", *tiny(weights), env=env, input=data
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout[:1] == b"\x47"  # MPEG-TS sync byte
    (tmp_path / "o.ts").write_bytes(r.stdout)
    assert video_facts(tmp_path / "o.ts") == (256, 192, 7)


def test_reader_closing_the_pipe_early_is_quiet(
    adcvsr_bin: str, env: dict[str, str], weights: Path, big_mkv: Path
) -> None:
    # adcvsr upscale big.mkv - | head -c 1000
    head = shutil.which("head")
    assert head is not None
    p1 = subprocess.Popen(
        [adcvsr_bin, "upscale", str(big_mkv), "-", *tiny(weights)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    p2 = subprocess.Popen([head, "-c", "1000"], stdin=p1.stdout, stdout=subprocess.PIPE)
    assert p1.stdout is not None
    p1.stdout.close()  # only head holds the read end now
    got, _ = p2.communicate(timeout=120)
    err = p1.stderr.read().decode() if p1.stderr else ""
    rc = p1.wait(timeout=120)
    assert len(got) == 1000
    assert rc == 141, err
    assert_quiet_failure(err)


def test_mp4_with_the_index_at_the_end_cannot_come_through_a_pipe(
    adcvsr_bin: str, env: dict[str, str], weights: Path, tmp_path: Path
) -> None:
    src = make_video(tmp_path / "big.mp4", frames=24, rate=4, audio="pcm_s16le", audio_seconds=6.0)
    assert src.stat().st_size >= 1_000_000
    # input= feeds a real pipe (stdin=<file> would hand over a seekable file, which works).
    r = run(
        adcvsr_bin,
        "upscale",
        "-",
        tmp_path / "o.mkv",
        *tiny(weights),
        env=env,
        input=src.read_bytes(),
    )
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "cannot read this MP4 from a pipe" in err and "faststart" in err  # what to do instead
    assert_quiet_failure(err)
    assert not (tmp_path / "o.mkv").exists() and not no_part_files(tmp_path)


# ----------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_batch(
    adcvsr_bin: str, env: dict[str, str], weights: Path, tmp_path: Path, sig: int, code: int
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i, name in enumerate(("a.mkv", "b.mkv", "c.mkv")):
        make_video(src / name, frames=30, fmt="matroska", seed=i)
    sums = {p: sha256(p) for p in src.iterdir()}
    out = tmp_path / "out"
    p = subprocess.Popen(
        [adcvsr_bin, "upscale", str(src), str(out), "--json", "--chunk", "10", *tiny(weights)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert p.stderr is not None
    seen: list[dict[str, Any]] = []
    sent = None
    temp_at_signal: list[str] = []
    for line in p.stderr:
        ev = json.loads(line)
        seen.append(ev)
        # The first file is done and the second one is under way (a chunk written out).
        if ev["event"] == "progress" and ev["file"].endswith("b.mkv") and ev["frames_done"] > 0:
            temp_at_signal = [x.name for x in out.iterdir() if ".part" in x.name]
            p.send_signal(sig)
            sent = time.monotonic()
            break
    assert sent is not None, seen
    rest = p.stderr.read()
    rc = p.wait(timeout=60)
    took = time.monotonic() - sent
    assert rc == code, rest
    assert took < 15, took  # stops within a chunk, not at the end of the file
    assert len(temp_at_signal) == 1 and temp_at_signal[0].startswith(".b.")
    events = seen + jsonl(rest)
    summary = [e for e in events if e["event"] == "summary"][-1]
    assert summary["interrupted"] is True and summary["done"] == 1 and summary["exit_code"] == code
    assert "interrupted: 1 file(s) completed" in rest
    assert_quiet_failure(rest)
    finished = [e["output"] for e in events if e["event"] == "file_done"]
    assert [Path(f).name for f in finished] == ["a.mkv"]
    assert sorted(x.name for x in out.iterdir()) == ["a.mkv"]  # the temp file is gone
    assert video_facts(out / "a.mkv") == (256, 192, 30)
    assert not no_part_files(tmp_path)
    assert {q: sha256(q) for q in src.iterdir()} == sums


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_one_long_native_call(
    adcvsr_bin: str, env: dict[str, str], weights: Path, tmp_path: Path, sig: int, code: int
) -> None:
    """Python runs signal handlers between bytecodes only; a CPU network layer can take minutes.
    The run must still end within a few seconds, with no temporary file left and the prior
    output untouched (here: one untiled 8-frame batch at 256x256, whose attention layers each
    take seconds on this machine)."""
    src = make_video(tmp_path / "big.mkv", frames=8, fmt="matroska", size=(256, 256))
    out = tmp_path / "o.mkv"
    out.write_bytes(b"previous output")
    p = subprocess.Popen(
        [
            adcvsr_bin,
            "upscale",
            str(src),
            str(out),
            "-y",
            "--json",
            "--tile",
            "0",
            "--batch",
            "8",
            *tiny(weights),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert p.stderr is not None
    for line in p.stderr:
        if json.loads(line)["event"] == "plan":  # the network is about to run
            break
    time.sleep(1.0)
    sent = time.monotonic()
    p.send_signal(sig)
    rest = p.stderr.read()
    rc = p.wait(timeout=60)
    took = time.monotonic() - sent
    assert rc == code, rest
    assert took < 6, took
    assert "Traceback" not in rest
    assert out.read_bytes() == b"previous output"
    assert not no_part_files(tmp_path)


# ----------------------------------------------------------------------------- terminal


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal; return (exit code, what the terminal showed)."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:
                return
            if not b:
                return
            chunks.append(b)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    p = subprocess.Popen(args, stderr=slave, stdout=subprocess.DEVNULL, env=env)
    os.close(slave)
    rc = p.wait(timeout=120)
    t.join(10)
    os.close(master)
    return rc, b"".join(chunks).decode(errors="replace")


def test_progress_bars_on_a_terminal_only(
    adcvsr_bin: str, env: dict[str, str], weights: Path, clips: Path, tmp_path: Path
) -> None:
    e = dict(env, TERM="xterm", COLUMNS="120")
    e.pop("NO_COLOR", None)
    rc, shown = _run_on_a_terminal(
        [adcvsr_bin, "upscale", str(clips / "a.mp4"), str(tmp_path / "o.mkv"), *tiny(weights)], e
    )
    assert rc == 0, shown
    assert "fps" in shown and "10/10" in shown


class Terminal:
    """The console script with stderr on a pseudo-terminal (progress bars on), and a JSON-lines
    file to follow the run by."""

    def __init__(self, args: list[str], env: dict[str, str], json_file: Path) -> None:
        self.json_file = json_file
        master, slave = pty.openpty()
        self._master, self._chunks = master, []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        e = dict(env, TERM="xterm", COLUMNS="120")
        self.p = subprocess.Popen(
            [*args, "--json-file", str(json_file)],
            stderr=slave,
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env=e,
        )
        os.close(slave)

    def _read(self) -> None:
        while True:
            try:
                b = os.read(self._master, 65536)
            except OSError:
                return
            if not b:
                return
            self._chunks.append(b)

    def wait_for(self, event: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.json_file.exists() and any(
                e["event"] == event for e in jsonl(self.json_file.read_text())
            ):
                return
            assert self.p.poll() is None, self.shown()
            time.sleep(0.05)
        raise AssertionError(f"no {event} event")

    def wait(self) -> int:
        rc = self.p.wait(timeout=60)
        self._pump.join(10)
        os.close(self._master)
        return rc

    def shown(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")


def _long_native_call(src_dir: Path, weights: Path, adcvsr_bin: str) -> tuple[list[str], Path]:
    """An upscale whose network call takes seconds (one untiled 8-frame batch at 256x256),
    over an existing output."""
    src = make_video(src_dir / "big.mkv", frames=8, fmt="matroska", size=(256, 256))
    out = src_dir / "o.mkv"
    out.write_bytes(b"previous output")
    args = [adcvsr_bin, "upscale", str(src), str(out), "-y", "--tile", "0", "--batch", "8"]
    return [*args, *tiny(weights)], out


def test_sigterm_with_bars_on_a_terminal_acts_within_the_grace_time(
    adcvsr_bin: str, env: dict[str, str], weights: Path, tmp_path: Path
) -> None:
    """With bars on, rich's refresh thread runs; the signals are blocked before it starts, so
    the watcher takes SIGTERM even while the main thread is inside one long native call."""
    args, out = _long_native_call(tmp_path, weights, adcvsr_bin)
    term = Terminal(args, env, tmp_path / "log.jsonl")
    term.wait_for("plan")  # the network is about to run
    time.sleep(1.0)
    sent = time.monotonic()
    term.p.send_signal(signal.SIGTERM)
    rc = term.wait()
    took = time.monotonic() - sent
    shown = term.shown()
    assert rc == 143, shown
    # The watcher acts after 2 s at the latest; the margin is for a loaded 2-core machine (the
    # signal was left to the main thread before: 11 s and more here).
    assert took < 8, took
    assert "Traceback" not in shown and "adcvsr summary" not in shown, shown
    assert out.read_bytes() == b"previous output"
    assert not no_part_files(tmp_path)


def test_a_second_ctrl_c_exits_at_once(
    adcvsr_bin: str, env: dict[str, str], weights: Path, tmp_path: Path
) -> None:
    args, out = _long_native_call(tmp_path, weights, adcvsr_bin)
    term = Terminal(args, env, tmp_path / "log.jsonl")
    term.wait_for("plan")
    time.sleep(1.0)
    term.p.send_signal(signal.SIGINT)
    time.sleep(0.3)  # well inside the 2 s grace, while the network call still runs
    term.p.send_signal(signal.SIGINT)
    rc = term.wait()
    shown = term.shown()
    assert rc == 130, shown
    assert "adcvsr: interrupted again, exiting at once; removed 1 unfinished output(s)" in shown
    assert out.read_bytes() == b"previous output"
    assert not no_part_files(tmp_path)


def test_ctrl_c_of_a_single_file_prints_one_line(
    adcvsr_bin: str, env: dict[str, str], weights: Path, tmp_path: Path
) -> None:
    src = make_video(tmp_path / "in.mkv", frames=30, fmt="matroska")
    out = tmp_path / "o.mkv"
    p = subprocess.Popen(
        [adcvsr_bin, "upscale", str(src), str(out), "--json-file", str(tmp_path / "log.jsonl")]
        + ["--chunk", "5", "--chunk-overlap", "1", *tiny(weights)],
        stderr=subprocess.PIPE,
        env=env,
    )
    log = tmp_path / "log.jsonl"
    while not (log.exists() and any(e["event"] == "progress" for e in jsonl(log.read_text()))):
        assert p.poll() is None
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130
    assert err.decode().splitlines() == [
        f"adcvsr: error: interrupted; {out} was not written (nothing unfinished is left)"
    ]
    assert not out.exists() and not no_part_files(tmp_path)


@pytest.mark.parametrize(
    ("tty", "quiet", "json_on_stderr", "bars"),
    [
        (True, False, False, True),
        (True, True, False, False),  # --quiet
        (True, False, True, False),  # --json: stderr carries JSON lines only
        (False, False, False, False),  # not a terminal
    ],
)
def test_when_bars_are_drawn(
    monkeypatch: pytest.MonkeyPatch, tty: bool, quiet: bool, json_on_stderr: bool, bars: bool
) -> None:
    from adcvsr_cli.cli.report import Reporter

    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    assert Reporter(quiet=quiet, json_out=json_on_stderr).bars is bars


# ----------------------------------------------------------------------------- info


def test_info(clips: Path) -> None:
    r = runner.invoke(app, ["info", str(clips / "b.mkv")])
    assert r.exit_code == 0
    assert "h264 64x48" in r.stdout and "aac" in r.stdout
    r = runner.invoke(app, ["info", str(clips / "a.mp4"), "--json", "--count-frames"])
    d = json.loads(r.stdout)
    assert (d["width"], d["height"], d["frames"], d["frames_exact"]) == (64, 48, 10, True)
    r = runner.invoke(app, ["info", str(clips / "bad.mp4")])
    assert r.exit_code == 1 and "bad.mp4" in r.stderr and "Traceback" not in r.output


def test_info_for_people(tmp_path: Path) -> None:
    from media import make_srt

    src = make_video(
        tmp_path / "hdr.mkv",
        frames=5,
        fmt="matroska",
        audio="aac",
        audio_tags={"language": "fra"},
        subtitles=str(make_srt(tmp_path / "s.srt")),
        color={"color_primaries": 9, "color_trc": 16, "colorspace": 9, "color_range": 1},
    )
    r = runner.invoke(app, ["info", str(src)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == f"{src}: video (matroska,webm)"
    assert (
        lines[2] == "  timing    25 fps, 5 frames (estimate; --count-frames counts them), 0.200 s"
    )
    assert lines[4] == (
        "  colour    bt2020 primaries, smpte2084 (PQ) transfer, bt2020nc matrix, limited range"
    )
    assert "  audio     #1 aac, 48000 Hz, 2 channels (stereo), language fra" in lines
    assert "  subtitle  #2 srt, language eng" in lines
    raw = json.loads(runner.invoke(app, ["info", str(src), "--json"]).stdout)
    assert (raw["color_trc"], raw["color_range"]) == (16, 1)  # --json keeps the raw values
    img = runner.invoke(app, ["info", str(make_image(tmp_path / "p.png"))]).stdout.splitlines()
    assert img[1] == "  image     png 40x30 rgb24, 8-bit" and not any("frames" in x for x in img)
    ntsc = make_video(tmp_path / "ntsc.mp4", frames=3, rate=Fraction(24000, 1001))
    lines = runner.invoke(app, ["info", str(ntsc), "--count-frames"]).stdout.splitlines()
    assert lines[2] == "  timing    23.976 fps (24000/1001), 3 frames, 0.125 s", lines


# ----------------------------------------------------------------------------- examples


@pytest.fixture
def example_env(env: dict[str, str], weights: Path) -> dict[str, str]:
    return dict(env, ADCVSR_WEIGHTS=str(weights), ADCVSR_DEVICE="cpu")


def test_example_upscale_folder(example_env: dict[str, str], clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "up"
    cmd = ["bash", str(EXAMPLES / "upscale_folder.sh"), str(clips), str(out), "-q"]
    r = subprocess.run(cmd, env=example_env, capture_output=True, timeout=120)
    err = r.stderr.decode()
    assert r.returncode == 3, err  # bad.mp4
    assert "some files failed" in err and "bad.mp4" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mkv")) == [
        "a_x4.mkv",
        "b_x4.mkv",
        "sub/c_x4.mkv",
    ]
    events = jsonl((out / "adcvsr-log.jsonl").read_text())
    assert events[-1]["event"] == "summary" and events[-1]["done"] == 3


def test_example_pipe(example_env: dict[str, str], clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "piped.nut"
    cmd = ["bash", str(EXAMPLES / "pipe.sh"), str(clips / "b.mkv"), str(out), "nut"]
    r = subprocess.run(cmd, env=example_env, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert video_facts(out) == (256, 192, 8)
    assert len(packets(out, "audio")) == len(packets(clips / "b.mkv", "audio"))


def test_example_api(example_env: dict[str, str], clips: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(EXAMPLES / "api.py"),
        str(clips / "a.mp4"),
        str(clips / "bad.mp4"),
        str(tmp_path / "o"),
    ]
    r = subprocess.run(cmd, env=example_env, capture_output=True, timeout=120, cwd=tmp_path)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 3, err
    assert "10 frames in" in out and "bad.mp4" in err
    assert video_facts(tmp_path / "o" / "a_x4.mkv") == (256, 192, 10)


def test_stale_temporary_outputs_of_killed_runs_are_removed(
    adcvsr_bin: str, env: dict[str, str], weights: Path, tmp_path: Path
) -> None:
    """A run killed outright (kill -9) leaves its .part file; the next run into that folder
    removes it, and leaves alone the temporary files of processes that are still alive."""
    src = make_video(tmp_path / "a.mkv", frames=4, fmt="matroska")
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f".x.adcvsr-{dead.pid}-0123abcd.part.mkv"
    stale.write_bytes(b"half a file")
    live = out / f".y.adcvsr-{os.getpid()}-89abcdef.part.mkv"
    live.write_bytes(b"someone else's work in progress")
    r = run(adcvsr_bin, "upscale", src, out / "a.mkv", *tiny(weights), env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert not stale.exists() and live.exists()
    assert "unfinished output of an earlier run" in r.stderr.decode()


# ----------------------------------------------------------------------------- first-hour messages


def test_skip_existing_with_overwrite_is_a_usage_error(no_model: NoModel, clips: Path) -> None:
    r = runner.invoke(app, ["upscale", str(clips / "a.mp4"), "o.mkv", "--skip-existing", "-y"])
    assert r.exit_code == 2
    assert "--skip-existing and --overwrite/-y contradict each other" in r.stderr


def test_skip_existing_on_a_single_file_says_it_skipped(
    no_model: NoModel, clips: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o.mkv"
    out.write_bytes(b"kept")
    r = runner.invoke(app, ["upscale", str(clips / "a.mp4"), str(out), "--skip-existing"])
    assert r.exit_code == 0, r.output
    assert r.stderr.strip() == f"{clips / 'a.mp4'}: skipped, {out} exists (--skip-existing)"
    assert out.read_bytes() == b"kept" and no_model.calls == 0


def test_a_single_file_into_a_missing_folder_creates_it(
    adcvsr_bin: str, env: dict[str, str], weights: Path, clips: Path, tmp_path: Path
) -> None:
    out = tmp_path / "new" / "deeper" / "o.mkv"
    r = run(adcvsr_bin, "upscale", clips / "a.mp4", out, *tiny(weights), "-v", env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert video_facts(out) == (256, 192, 10)
    assert "10 frames in" in r.stderr.decode()


def test_a_failing_file_leaves_no_empty_output_folder(
    no_model: NoModel, clips: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(clips / "bad.mp4", src / "sub" / "bad.mp4")
    out = tmp_path / "out"
    r = runner.invoke(app, ["upscale", str(src), str(out), "-r"])
    assert r.exit_code == 3 and "bad.mp4" in r.stderr
    assert not (out / "sub").exists()


def test_a_folder_with_webp_images_writes_png_and_says_so(
    adcvsr_bin: str, env: dict[str, str], weights: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    make_image(src / "a.png")
    frame = av.VideoFrame.from_ndarray(np.full((30, 40, 3), 90, np.uint8), format="rgb24")
    _write_webp(src / "b.webp", frame)
    out = tmp_path / "out"
    dry = run(adcvsr_bin, "upscale", src, out, "--dry-run", *tiny(weights), env=env)
    assert dry.returncode == 0, dry.stderr.decode()
    assert f".webp images cannot be written: {out / 'b.png'} is a PNG" in dry.stdout.decode()
    r = run(adcvsr_bin, "upscale", src, out, *tiny(weights), env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert video_facts(out / "b.png")[:2] == (160, 120)


def _write_webp(path: Path, frame: av.VideoFrame) -> None:
    with av.open(str(path), "w", format="webp") as c:
        s = c.add_stream("libwebp", rate=1)
        s.width, s.height, s.pix_fmt = frame.width, frame.height, "yuv420p"
        c.mux(s.encode(frame.reformat(format="yuv420p")))
        c.mux(s.encode(None))


@pytest.mark.parametrize(
    ("out", "extra", "message"),
    [
        ("o.mkv", ["--width", "100000"], "over 16384 pixels on a side (beyond every codec level)"),
        ("o.mkv", ["--codec", "bogus"], "a.mp4: unknown video encoder 'bogus'"),
        ("o.mkv", ["--pix-fmt", "bogus"], "encoder libx264 cannot write pixel format bogus"),
        ("o.mkv", ["--codec", "mpeg4", "--width", "641"], "is odd and mpeg4 cannot use yuv420p"),
        ("o.mkv", ["--format", "bogus"], "unknown container format 'bogus'"),
        ("o.xyz", [], "o.xyz: cannot tell the container from '.xyz'"),
    ],
)
def test_dry_run_refuses_what_the_run_refuses_with_the_same_message(
    adcvsr_bin: str,
    env: dict[str, str],
    weights: Path,
    clips: Path,
    tmp_path: Path,
    out: str,
    extra: list[str],
    message: str,
) -> None:
    args = ["upscale", clips / "a.mp4", tmp_path / out, *extra, *tiny(weights)]
    dry = run(adcvsr_bin, *args, "--dry-run", env=env)
    real = run(adcvsr_bin, *args, env=env)
    assert dry.returncode == real.returncode != 0
    assert message in dry.stderr.decode()
    assert dry.stderr.decode() == real.stderr.decode()
    assert not list(tmp_path.iterdir())


def test_dry_run_of_an_existing_output_exits_as_the_run_does(
    adcvsr_bin: str, env: dict[str, str], weights: Path, clips: Path, tmp_path: Path
) -> None:
    (tmp_path / "o.mkv").write_bytes(b"done before")
    args = ["upscale", clips / "a.mp4", tmp_path / "o.mkv", *tiny(weights)]
    dry = run(adcvsr_bin, *args, "--dry-run", env=env)
    real = run(adcvsr_bin, *args, env=env)
    assert dry.returncode == real.returncode == 2, real.stderr.decode()
    assert "o.mkv: output exists (use --overwrite/-y" in dry.stdout.decode()
    assert (tmp_path / "o.mkv").read_bytes() == b"done before"


def test_dry_run_names_the_encoder_and_warns_as_the_run_does(
    adcvsr_bin: str, env: dict[str, str], weights: Path, clips: Path, tmp_path: Path
) -> None:
    args = ["upscale", clips / "a.mp4", tmp_path / "o.mkv", "--width", "641", *tiny(weights)]
    dry = run(adcvsr_bin, *args, "--dry-run", env=env)
    real = run(adcvsr_bin, *args, env=env)
    assert dry.returncode == real.returncode == 0, real.stderr.decode()
    warning = "warning: output size 641x482 is odd; writing yuv444p instead of yuv420p"
    assert warning in dry.stderr.decode().splitlines()
    assert warning in real.stderr.decode().splitlines()
    assert "  output  641x482 mkv, libx264 yuv444p" in dry.stdout.decode().splitlines()


def test_dry_run_refuses_weights_the_run_refuses(
    adcvsr_bin: str, env: dict[str, str], clips: Path, tmp_path: Path
) -> None:
    args = ["upscale", clips / "a.mp4", tmp_path / "o.mkv", "--device", "cpu"]
    args += ["--weights", tmp_path / "missing.safetensors"]
    dry = run(adcvsr_bin, *args, "--dry-run", env=env)
    real = run(adcvsr_bin, *args, env=env)
    assert dry.returncode == real.returncode == 1
    assert "missing.safetensors: no such weights file" in dry.stderr.decode()
    assert dry.stderr.decode() == real.stderr.decode() and dry.stdout == b""
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def temporal_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_weights(
        tmp_path_factory.mktemp("weights") / "tiny-vsr.safetensors", temporal=True
    )


@pytest.mark.parametrize(
    ("name", "extra", "model"),
    [
        ("a.mp4", [], "image"),
        ("photo.png", [], "image"),
        ("big.mkv", ["--tile", "64"], "image"),
        ("a.mp4", ["--batch", "3"], "image"),
        ("a.mp4", ["--chunk", "6", "--chunk-overlap", "2"], "temporal"),
        ("photo.png", [], "temporal"),
    ],
)
def test_dry_run_plan_is_the_runs_plan(
    adcvsr_bin: str,
    env: dict[str, str],
    weights: Path,
    temporal_weights: Path,
    clips: Path,
    tmp_path: Path,
    name: str,
    extra: list[str],
    model: str,
) -> None:
    """Every field of the run's ``plan`` event is in the dry run's, with the same value; the
    dry run knows a network's temporal blocks from its file's header, loading no tensor."""
    src = clips / name
    if name == "photo.png":
        src = make_image(tmp_path / "photo.png")
    elif name == "big.mkv":
        src = make_video(tmp_path / "big.mkv", frames=3, fmt="matroska", size=(160, 128))
    out = tmp_path / f"o{src.suffix}"
    w = temporal_weights if model == "temporal" else weights
    args = ["upscale", src, out, *extra, *tiny(w), "--json"]
    dry = [e for e in jsonl(run(adcvsr_bin, *args, "--dry-run", env=env).stderr.decode())]
    real = [e for e in jsonl(run(adcvsr_bin, *args, env=env).stderr.decode())]
    (planned,) = [e for e in dry if e["event"] == "plan"]
    (used,) = [e for e in real if e["event"] == "plan"]
    fields = set(used) - {"event", "time"}
    assert {"chunk", "batch", "tile", "temporal", "estimated_peak_bytes"} <= fields
    assert {k: planned.get(k) for k in fields} == {k: used[k] for k in fields}
    assert used["temporal"] is (model == "temporal")
    (done,) = [e for e in real if e["event"] == "file_done"]
    assert planned["frames"] == done["frames"]


def test_dry_run_of_an_image_says_one_frame_its_size_and_depth(
    adcvsr_bin: str, env: dict[str, str], temporal_weights: Path, tmp_path: Path
) -> None:
    src = make_image(tmp_path / "photo.png", 40, 30)
    args = ["upscale", src, tmp_path / "o.png", *tiny(temporal_weights), "--dry-run"]
    r = run(adcvsr_bin, *args, env=env)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert "  input   40x30, 1 frame (image, 8-bit), streams: video:png" in lines
    assert any(ln.startswith("  plan    1 frame per network call, 1 chunk") for ln in lines), lines
    assert any("(with temporal blocks)" in ln for ln in lines), lines
    assert "?" not in r.stdout.decode()


# ----------------------------------------------------------------------------- bench


def test_bench_help_says_what_it_does(adcvsr_bin: str, env: dict[str, str]) -> None:
    out = run(adcvsr_bin, "bench", "--help", env=env, timeout=60).stdout.decode()
    flat = " ".join(out.split())
    assert "--json FILE Also write the whole report to FILE (JSON)." in flat
    assert "about 3 on a 2-core machine" in flat and "current folder or its parent" in flat
    for internal in ("issue", "docs/", "force=", "EncodeOptions", "--help` ", "-- --"):
        assert internal not in out, internal
    assert max(len(line) for line in out.splitlines()) <= 80


def test_bench_is_a_command_like_the_others(tmp_path: Path) -> None:
    r = runner.invoke(app, ["bench", "--protocols", "A,D"])
    assert r.exit_code == 2 and "--protocols A,D: use A, B and/or C" in r.stderr
    report = tmp_path / "bench.json"
    r = runner.invoke(
        app,
        ["bench", "--protocols", "A", "--variants", "pipeline", "--runs", "1", "--warmup", "0"]
        + ["--device", "cpu", "--json", str(report), "-q"],
    )
    assert r.exit_code == 0, r.output
    assert "Protocol A" in r.stdout and f"report written to {report}" in r.stderr
    entries = json.loads(report.read_text())["protocols"]["A"]
    assert {e["variant"] for e in entries} == {"pipeline"}


def test_peek_dims_reads_headers_and_the_registry_only(
    weights: Path, temporal_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``upscale --dry-run`` knows of the network: no tensor loaded, no request made."""
    import adcvsr_cli.weights.native as native
    from adcvsr_cli.errors import WeightsError
    from adcvsr_cli.weights import load_registry, peek_dims, resolve_weights

    monkeypatch.setattr(native, "load_native", NoModel())
    assert peek_dims(str(temporal_weights)).has_temporal
    assert peek_dims(temporal_weights).has_temporal
    assert not peek_dims(str(weights)).has_temporal
    reg = load_registry()
    assert peek_dims(None) == reg.get(reg.default).dims
    assert not peek_dims("adcsr-x4").has_temporal
    assert peek_dims("hf://owner/repo@main/x.safetensors", cache_dir=tmp_path) is None
    unreleased = [e for e in reg.models.values() if not e.available]
    for entry in unreleased:  # the run refuses it, so does the dry run, with the same message
        with pytest.raises(WeightsError) as peeked:
            peek_dims(entry.name)
        with pytest.raises(WeightsError) as resolved:
            resolve_weights(entry.name, cache_dir=tmp_path, offline=True)
        assert str(peeked.value) == str(resolved.value)
    with pytest.raises(WeightsError, match="no such weights file"):
        peek_dims(str(tmp_path / "missing.safetensors"))


def test_huggingface_hub_messages_are_shown_as_ours_while_a_command_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """huggingface_hub's log records (its retries, resumed downloads) go through the command's
    handler: ``warning: huggingface_hub: ...``, a JSON line with --json-file, hidden by -q; its
    logger is as it was before and after the command."""
    import logging

    import huggingface_hub.utils.logging  # noqa: F401 (installs the library's stderr handler)

    from adcvsr_cli.cli.report import Reporter

    hub = logging.getLogger("huggingface_hub")
    child = logging.getLogger("huggingface_hub.file_download")
    assert hub.handlers  # the library's own, which would print a bare line
    before = (list(hub.handlers), [list(h.filters) for h in hub.handlers], hub.propagate)
    log = tmp_path / "log.jsonl"
    with Reporter(json_file=log, hub_logs=True):
        assert hub.propagate is False
        child.warning("Download was cut off, resuming at byte %d", 42)
        child.info("not shown without -v")
    assert (list(hub.handlers), [list(h.filters) for h in hub.handlers], hub.propagate) == before
    err = capsys.readouterr().err
    assert err == "warning: huggingface_hub: Download was cut off, resuming at byte 42\n"
    (event,) = [e for e in jsonl(log.read_text()) if e["event"] == "warning"]
    assert event["message"] == "huggingface_hub: Download was cut off, resuming at byte 42"
    with Reporter(quiet=True, hub_logs=True):
        child.warning("hidden by -q")
    assert capsys.readouterr().err == ""


def test_a_cut_off_download_warns_through_our_handler(
    adcvsr_bin: str, weights: Path, tmp_path: Path
) -> None:
    """A real huggingface_hub warning (the body cut off, then resumed), from the fake Hub."""
    from hubserver import FakeHub

    src = make_video(tmp_path / "in.mp4", frames=3)
    with FakeHub() as hub:
        hub.add_file("test/native", "model.safetensors", weights.read_bytes())
        hub.file("test/native", "model.safetensors").plan = ["cut"]
        e = cli_env(tmp_path / "cache", HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"))
        e.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="0")
        args = ["upscale", src, tmp_path / "o.mkv", "--device", "cpu"]
        r = run(adcvsr_bin, *args, "--weights", "hf://test/native@main/model.safetensors", env=e)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    lines = [ln for ln in err.splitlines() if "Error while downloading" in ln]
    assert lines and all(ln.startswith("warning: huggingface_hub: ") for ln in lines), err
    # A cached file that went bad is refused by the dry run as by the run, not "not cached".
    (blob,) = (tmp_path / "hf").rglob("blobs/*")
    blob.write_bytes(b"x" + blob.read_bytes()[1:])
    args += ["--weights", "hf://test/native@main/model.safetensors", "--offline", "-y"]
    dry, real = run(adcvsr_bin, *args, "--dry-run", env=e), run(adcvsr_bin, *args, env=e)
    assert dry.returncode == real.returncode == 1 and b"corrupt" in dry.stderr
    (error,) = [ln for ln in dry.stderr.splitlines() if ln.startswith(b"adcvsr: error: ")]
    assert error in real.stderr.splitlines() and b"not cached" not in dry.stderr


def test_the_eta_waits_until_it_means_something() -> None:
    """No ETA in the first ten seconds or before a frame is done (one chunk's estimate jumps
    about); then the remaining time from rich's rate, which is taken over the last minute."""
    from types import SimpleNamespace

    from adcvsr_cli.cli.report import _EtaColumn

    def eta(elapsed: float, completed: int, remaining: float | None) -> str:
        task = SimpleNamespace(elapsed=elapsed, completed=completed, time_remaining=remaining)
        return _EtaColumn().render(task).plain

    assert eta(9.9, 5, 125.0) == "" and eta(30.0, 0, None) == "" and eta(30.0, 5, None) == ""
    assert eta(10.0, 5, 125.4) == "ETA 2:05"
    assert eta(60.0, 50, 3 * 3600 + 61) == "ETA 3:01:01"


def test_a_reporter_routes_library_logs_only_when_asked_and_undoes_a_failed_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    import rich.progress

    from adcvsr_cli.cli.report import Reporter

    hub = logging.getLogger("huggingface_hub")
    propagate = hub.propagate
    with Reporter():  # info, models, convert: the library's logger is not touched
        assert hub.propagate is propagate

    def broken(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("no live display")

    monkeypatch.setattr(rich.progress, "Progress", broken)
    reporter = Reporter(hub_logs=True)
    reporter.bars = True  # as on a terminal: building the bars fails after the routing began
    with pytest.raises(RuntimeError, match="no live display"), reporter:
        pass
    assert hub.propagate is propagate and not any(
        type(h).__name__ == "_Relay" for h in hub.handlers
    )


def test_the_signal_watcher_takes_a_garbled_signal_number_as_a_termination(monkeypatch):
    """``sigtimedwait`` returns only when it took one of the watched signals; Python 3.13 was
    seen to report a garbage number for it. The watcher takes that as SIGTERM (no traceback,
    no lost signal): the runs are cancelled and the main thread is interrupted."""
    from adcvsr_cli.cli import signals

    watch = signals.SignalWatch({signal.SIGTERM, signal.SIGINT})
    cancel = threading.Event()
    watch.cancels.add(cancel)
    calls = []

    class Info:
        si_signo = 1082765568

    def fake_wait(sigs, timeout):
        calls.append(set(sigs))
        if len(calls) == 1:
            return Info()
        watch._stop.set()  # the second wait ends the loop
        return None

    monkeypatch.setattr(signals.signal, "sigtimedwait", fake_wait)
    interrupts = []
    monkeypatch.setattr("_thread.interrupt_main", lambda *a: interrupts.append(a))
    watch._watch()
    assert len(calls) == 2
    assert watch.received == signal.SIGTERM and cancel.is_set()
    assert interrupts == [(signal.SIGTERM,)]


def test_the_console_script_keeps_freed_memory_before_any_thread_starts(monkeypatch):
    """``adcvsr`` sets the heap up (one arena, freed blocks kept) before the signal watcher or
    anything else starts a thread: threads started earlier would keep arenas of their own."""
    import importlib

    app_module = importlib.import_module("adcvsr_cli.cli.app")
    order: list[str] = []
    monkeypatch.setattr(app_module, "keep_freed_memory", lambda: order.append("heap") or True)
    monkeypatch.setattr(app_module, "install", lambda: order.append("signals"))
    monkeypatch.setattr(app_module, "app", lambda: order.append("command"))
    app_module.main()
    assert order == ["heap", "signals", "command"]
