"""Charts: adcvsr bench --plot (and --flicker, the meter in protocol C), quality's plot helper."""

from __future__ import annotations

import json
import sys

import pytest
from PIL import Image

from adcvsr_cli import bench
from adcvsr_cli.errors import UsageError
from adcvsr_cli.plots import bench_rows, plot_bench, plot_quality


def test_bench_plot_and_flicker(tmp_path, capsys):
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    args = ["--device", "cpu", "--protocols", "C", "--runs", "1", "--warmup", "0"]
    args += ["--e2e-runs", "1", "--small", "--dims", "tiny", "--variants", "eager"]
    args += ["--threads", "1", "--json", str(out), "--plot", str(png), "--flicker", "--quiet"]
    args += ["--no-floor"]  # the floor runs time the pipeline against a loop: no output to meter
    assert bench.main(args) == 0
    text = capsys.readouterr().out
    assert f"chart written to {png}" in text and "flicker E*warp" in text
    report = json.loads(out.read_text())
    entries = report["protocols"]["C"]
    assert entries and all("error" not in e for e in entries)
    for e in entries:
        fl = e["flicker"]
        assert fl["flow"] == "opencv-dis-medium"
        assert fl["ewarp"] > 0 and fl["ewarp_bicubic"] > 0
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] == 1000
        assert im.size[1] > 150  # one panel, a bar per entry
    assert len(bench_rows(report)) == len(entries)


def test_bench_names_a_missing_extra_before_running(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert bench.main(["--device", "cpu", "--plot", str(tmp_path / "x.png")]) == 2
    assert "pip install 'adcvsr[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_plot_refusals(tmp_path):
    with pytest.raises(UsageError, match="no successful entry"):
        plot_bench({"protocols": {"A": [{"error": "x", "model": "m"}]}}, tmp_path / "a.png", True)
    report = {
        "output": "o.mkv",
        "frames": 4,
        "per_frame": [1.0, None, 2.0],
        "per_frame_bicubic": [0.5, None, 0.4],
        "chunk_seams": {"pairs": [2]},
        "scene_cuts": [2],
        "ewarp": 1.5,
        "ewarp_bicubic": 0.45,
    }
    with pytest.raises(UsageError, match="ending in .png"):
        plot_quality(report, tmp_path / "a.jpg", False)
    plot_quality(report, tmp_path / "q.png", False)
    with Image.open(tmp_path / "q.png") as im:
        assert im.size == (1000, 400)
