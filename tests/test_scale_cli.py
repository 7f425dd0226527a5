"""``adcvsr upscale`` with --segment, --restart and --devices, through the installed script."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
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
