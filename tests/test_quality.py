"""The flicker meter: known motion measures near zero, injected flicker rises with its amplitude,
seams come from the plan, and bad inputs are named."""

from __future__ import annotations

import pytest
from synth import make_pair, rotating, shifted, write_lossless

from adcvsr_cli.errors import VideoError
from adcvsr_cli.quality import chunk_seam_pairs, measure, tile_bands

PLAN = {"chunk": 25, "chunk_overlap": 4, "tile": 0, "tile_overlap": 32}


@pytest.mark.parametrize("gen", [shifted, rotating], ids=["shift", "rotate"])
def test_known_motion_measures_near_zero_and_flicker_rises(tmp_path, gen):
    values = []
    for amplitude in (0.0, 0.01, 0.03):
        src, dst = make_pair(tmp_path, gen, amplitude=amplitude, name=f"a{amplitude}")
        r = measure(src, dst, **PLAN)
        assert r.frames == 8 and len(r.per_frame) == 7 and r.pairs_measured == 7
        assert r.width == 256 and r.height == 192
        values.append(r.ewarp)
        # The baseline is the bicubic upscale of the same input: the same for every amplitude.
        assert r.ewarp_bicubic < 0.05
        assert r.valid_fraction > 0.8  # only the borders (and the rotating corners) are masked
    # Without flicker the output is the bicubic upscale, whose motion the flow follows: ~0.
    assert values[0] < 0.05
    # An alternating gain of +-a changes every pixel by ~2a*I between frames: error ~ 4a^2 E[I^2].
    assert values[0] < values[1] < values[2]
    assert values[1] > 5 * values[0]
    assert 6.0 < values[2] / values[1] < 12.0  # quadratic in the amplitude (9 for 3x)


def test_without_flow_motion_would_count_as_flicker(tmp_path):
    # The same panning clip measured with the flow ignored would be far above the meter's value:
    # this guards against a flow that silently returns zeros.
    import numpy as np

    from adcvsr_cli.quality import unit
    from adcvsr_cli.reference import bicubic

    src, dst = make_pair(tmp_path, shifted, amplitude=0.0)
    r = measure(src, dst, **PLAN)
    a = unit(bicubic(shifted(0, 64, 48), 256, 192))
    b = unit(bicubic(shifted(1, 64, 48), 256, 192))
    raw = float(((a - b) ** 2).mean()) * 1e3
    assert raw > 100 * r.ewarp
    assert np.isfinite(raw)


def test_chunk_seams_follow_the_plan():
    # 25-frame chunks stepping by 21, cross-fades over 4 frames ending at 25, 46, ...
    pairs = chunk_seam_pairs(60, 25, 4, [])
    assert min(pairs) == 20 and 24 in pairs and 19 not in pairs and 25 not in pairs
    assert 41 in pairs and 45 in pairs
    # No overlap: the hand-over is the one pair across the chunk boundary.
    assert chunk_seam_pairs(10, 5, 0, []) == {4}
    # A scene cut is no seam (chunks abut, nothing is blended).
    assert chunk_seam_pairs(10, 5, 0, [5]) == set()
    assert chunk_seam_pairs(5, 25, 4, []) == set()


def test_tile_bands_map_overlaps_to_output_pixels():
    rows, cols = tile_bands((64, 96), (256, 384), 64, 32)
    assert rows == ()  # one row of tiles
    assert cols == ((128, 256),)  # LR columns 32..63 overlap, x4
    assert tile_bands((64, 96), (256, 384), 0, 32) == ((), ())


def test_seam_flicker_is_found_at_the_seams(tmp_path):
    # Flicker only on the hand-over pairs of a chunk plan: the seams stand out.
    import numpy as np

    from adcvsr_cli.reference import bicubic

    lr = [shifted(i, 64, 48) for i in range(12)]
    out = []
    for i, f in enumerate(lr):
        b = bicubic(f, 256, 192).astype(np.float64)
        gain = 1.04 if i >= 6 else 1.0  # a brightness step between frames 5 and 6
        out.append(np.clip(np.rint(b * gain), 0, 255).astype(np.uint8))
    src = write_lossless(tmp_path / "in.mkv", lr)
    dst = write_lossless(tmp_path / "out.mkv", out)
    r = measure(src, dst, chunk=6, chunk_overlap=0, tile=0, tile_overlap=32)
    seams = r.chunk_seams
    assert seams["pairs"] == [5]
    assert seams["largest"][0]["frame"] == 5
    assert seams["seam_to_inside"] > 20
    assert r.per_frame.index(max(r.per_frame)) == 5


def test_frame_count_mismatch_is_an_error_naming_the_output(tmp_path):
    lr = [shifted(i, 64, 48) for i in range(6)]
    src = write_lossless(tmp_path / "in.mkv", lr)
    from synth import flickered

    dst = write_lossless(tmp_path / "out.mkv", flickered(lr[:4], 0.0))
    with pytest.raises(VideoError, match=r"out\.mkv: has 4 frames but .*in\.mkv has 6"):
        measure(src, dst, **PLAN)


def test_missing_file_is_named(tmp_path):
    src, _ = make_pair(tmp_path, shifted)
    with pytest.raises(VideoError, match="nope.mkv: no such file"):
        measure(src, tmp_path / "nope.mkv", **PLAN)


def test_cli_json_is_one_object_and_plot_is_a_png(tmp_path):
    import json
    import os
    import subprocess
    import sys

    src, dst = make_pair(tmp_path, shifted, amplitude=0.02, frames=6)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    plot = tmp_path / "f.png"
    r = subprocess.run(
        [sys.executable, "-m", "adcvsr_cli", "quality", src, dst, "--json", "--tile", "0"]
        + ["--plot", str(plot)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)  # exactly one JSON document on stdout
    assert report["ewarp"] > report["ewarp_bicubic"] and len(report["per_frame"]) == 5
    assert report["plan"] == {"chunk": 25, "chunk_overlap": 4, "tile": 0, "tile_overlap": 32}
    from PIL import Image

    with Image.open(plot) as im:
        assert im.format == "PNG" and im.size == (1000, 400)
    # The plot is not replaced without -y; the text summary names the figures.
    r = subprocess.run(
        [sys.executable, "-m", "adcvsr_cli", "quality", src, dst, "--plot", str(plot)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 2 and "f.png: output exists" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "adcvsr_cli", "quality", src, dst, "--tile", "0"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "E*warp" in r.stdout and "bicubic upscale of the input" in r.stdout
    assert "chunk seams: none" in r.stdout and "tile seams: none" in r.stdout


def test_cli_names_the_missing_extra(tmp_path, monkeypatch):
    import sys

    from typer.testing import CliRunner

    from adcvsr_cli.cli import app

    src, dst = make_pair(tmp_path, shifted, frames=3)
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
    r = CliRunner().invoke(app, ["quality", src, dst])
    assert r.exit_code == 2
    assert "pip install 'adcvsr[quality]'" in r.output
