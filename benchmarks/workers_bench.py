"""Worker scaling of ``adcvsr upscale`` itself: 1 against 2 CPU workers, a batch and one long video.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/workers_bench.py [--files 4] [--frames 24]
        [--long 96] [--segment 24] [--repeats 2]

Times the installed command exactly as a user runs it (a subprocess per run, the tiny temporal
test network, 64x48 -> 256x192, libx264 ultrafast), with ``--devices cpu`` (one worker: the
files one after another) and ``--devices cpu,cpu`` (two workers pulling files and segments
from one queue), runs interleaved. Prints, per run: the wall time of the process, the run's own
time (the ``summary`` event: model load included, interpreter start not), frames/s, and how
many tasks each worker did (from the JSON events); then the load average, since on a shared
machine the other processes' load decides most of what these numbers show.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from media import make_video  # noqa: E402
from tiny import cli_env, write_tiny_weights  # noqa: E402


def run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, dict, Counter]:
    """One ``adcvsr upscale`` run: wall seconds, its summary event, tasks per worker."""
    exe = shutil.which("adcvsr") or "adcvsr"
    t = time.perf_counter()
    r = subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"adcvsr {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    ev = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    summary = next(e for e in ev if e["event"] == "summary")
    tasks: Counter = Counter()
    for e in ev:
        if e["event"] == "segment":
            tasks[e["worker"]] += 1
        elif e["event"] == "file_done" and "workers" in e and "segments" not in str(e["plan"]):
            tasks[e["workers"][0]] += 1  # a file in one piece: one task
    return wall, summary, tasks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=4, help="short files in the batch")
    ap.add_argument("--frames", type=int, default=24, help="frames per short file")
    ap.add_argument("--long", type=int, default=96, help="frames of the long video")
    ap.add_argument("--segment", type=int, default=24, help="--segment for the long video")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="adcvsr-workersbench-"))
    try:
        weights = write_tiny_weights(d / "tiny.safetensors", temporal=True)
        env = cli_env(d / "cache")
        (d / "batch").mkdir()
        for i in range(a.files):
            make_video(
                d / "batch" / f"f{i}.mp4", size=(64, 48), frames=a.frames, options={"g": "12"}
            )
        make_video(d / "long.mp4", size=(64, 48), frames=a.long, options={"g": "12"})
        common = ["--weights", str(weights), "--chunk", "6", "--chunk-overlap", "2"]
        common += ["--preset", "ultrafast", "--json", "-y"]
        work = {
            f"batch of {a.files} x {a.frames} frames": (
                ["upscale", "batch", "out", "--ext", "mkv", "--segment", "0"],
                a.files * a.frames,
            ),
            f"one video of {a.long} frames, --segment {a.segment}": (
                ["upscale", "long.mp4", "long_x4.mkv", "--segment", str(a.segment)],
                a.long,
            ),
        }
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
        for name, (args, frames) in work.items():
            print(f"\n{name} (64x48 -> 256x192, tiny temporal network):")
            print(f"  adcvsr {' '.join(args)} --weights tiny.safetensors {' '.join(common[2:])}")
            print("    --devices cpu | --devices cpu,cpu")
            walls: dict[str, list[float]] = {"cpu": [], "cpu,cpu": []}
            for _ in range(a.repeats):
                for devices in walls:
                    wall, summary, tasks = run([*args, *common, "--devices", devices], d, env)
                    walls[devices].append(wall)
                    spread = ", ".join(f"{w}: {n}" for w, n in sorted(tasks.items()))
                    print(
                        f"  --devices {devices:8} wall {wall:6.1f} s, run {summary['seconds']:6.1f} s, "
                        f"{frames / summary['seconds']:5.2f} frames/s; tasks {spread or '-'}; "
                        f"load {os.getloadavg()[0]:.1f}"
                    )
            one, two = (statistics.median(walls[k]) for k in ("cpu", "cpu,cpu"))
            print(f"  median wall: 1 worker {one:.1f} s, 2 workers {two:.1f} s: x{one / two:.2f}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
