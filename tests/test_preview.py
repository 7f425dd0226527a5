"""adcvsr preview: the sheet's geometry and labels (read back from the PNG), and crops equal to
the pixels of a full upscale run (lossless PNG frames), for an image and a temporal model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from media import make_video
from PIL import Image
from synth import shots_clip
from tiny import tiny_dims, write_tiny_weights

from adcvsr_cli.errors import UsageError
from adcvsr_cli.media import OutputExists, read_image
from adcvsr_cli.model import AdcVSR, init_random_
from adcvsr_cli.pipeline import UpscaleOptions, Upscaler, upscale
from adcvsr_cli.preview import make_preview, pick_indices, write_png


def tiny_upscaler(temporal: bool) -> Upscaler:
    m = AdcVSR(tiny_dims(temporal=temporal)).eval()
    init_random_(m, seed=1)
    return Upscaler(m, device=torch.device("cpu"), dtype=torch.float32, source="tiny-test")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clip") / "in.mp4", size=(48, 32), frames=12)


@pytest.mark.parametrize("temporal", [False, True], ids=["image", "temporal"])
def test_crops_equal_a_full_run_and_the_sheet_reads_back(tmp_path, clip, temporal):
    up = tiny_upscaler(temporal)
    options = UpscaleOptions(chunk=5, chunk_overlap=1, tile=0)
    result = make_preview(clip, up, options, count=3, crop=48, thumb=96)
    picked = [f.index for f in result.frames]
    assert picked == [2, 6, 10]  # the middles of three equal parts of 12 frames
    (tmp_path / "full").mkdir()
    upscale(
        clip, tmp_path / "full" / "%06d.png", up, UpscaleOptions(chunk=5, chunk_overlap=1, tile=0)
    )
    out = tmp_path / "sheet.png"
    write_png(out, result, overwrite=False)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert sheet.shape == result.sheet.shape
    for f in result.frames:
        full, _ = read_image(tmp_path / "full" / f"{f.index + 1:06d}.png")
        assert full.shape == (128, 192, 3) == f.network.shape
        np.testing.assert_array_equal(f.network, full)  # the whole frame, not only the crop
        x, y, w, h = f.crop
        assert (w, h) == (48, 48)
        cx, cy, cw, ch = f.cells["network 1:1"]
        assert (cw, ch) == (w, h)
        np.testing.assert_array_equal(sheet[cy : cy + ch, cx : cx + cw], full[y : y + h, x : x + w])


@pytest.mark.parametrize("color_fix", ["adain", "adain-temporal"])
def test_preview_frames_follow_the_full_runs_scene_cuts(tmp_path, color_fix):
    """Cuts at 9, 23 and 31: the picked frames of a temporal model (chunks of 5 overlapping by
    1) equal a full run's, also under adain-temporal (colour history from the shot start), and
    no warning says otherwise."""
    src = shots_clip(tmp_path / "shots.mp4", [9, 14, 8, 9])
    up = tiny_upscaler(True)
    options = UpscaleOptions(chunk=5, chunk_overlap=1, tile=0, color_fix=color_fix)
    events = []
    result = make_preview(
        src, up, options, at=[0.44, 1.04, 1.52], crop=32, thumb=64, on_event=events.append
    )
    assert [f.index for f in result.frames] == [11, 26, 38]
    assert not [e for e in events if e.get("type") == "warning"]
    (tmp_path / "full").mkdir()
    rep = upscale(src, tmp_path / "full" / "%03d.png", up, options)
    assert rep.scene_cuts == [9, 23, 31]
    for f in result.frames:
        full, _ = read_image(tmp_path / "full" / f"{f.index + 1:03d}.png")
        np.testing.assert_array_equal(f.network, full, err_msg=f"frame {f.index}")


def test_sheet_geometry_and_labels(tmp_path, clip):
    up = tiny_upscaler(False)
    result = make_preview(clip, up, UpscaleOptions(tile=0), at=[0.0, 0.2], crop=40, thumb=96)
    out = tmp_path / "p.png"
    write_png(out, result, overwrite=False)
    img = Image.open(out)
    labels = json.loads(img.text["adcvsr.preview"])
    assert labels["model"] == "tiny-test"
    assert labels["plan"] == "tile off, batch 1"  # the CPU's frame at a time
    assert labels["color_fix"] == "adain"
    assert labels["size"] == [48, 32, 192, 128]
    # 25 fps: 0.2 s is frame 5.
    assert [f["index"] for f in labels["frames"]] == [0, 5]
    assert [f["time"] for f in labels["frames"]] == ["00:00:00.000", "00:00:00.200"]
    # Two rows of four pictures: whole frames 96x64 (192x128 scaled to --thumb), crops 40x40.
    cells = labels["cells"]
    assert len(cells) == 2
    for row in cells:
        assert [tuple(row[k][2:]) for k in ("bicubic", "network")] == [(96, 64), (96, 64)]
        assert [tuple(row[k][2:]) for k in ("bicubic 1:1", "network 1:1")] == [(40, 40)] * 2
        xs = [row[k][0] for k in ("bicubic", "network", "bicubic 1:1", "network 1:1")]
        assert xs == sorted(xs) and xs[1] - xs[0] >= 96
    assert cells[1]["bicubic"][1] > cells[0]["bicubic"][1] + 64
    w, h = img.size
    assert w == cells[0]["network 1:1"][0] + 40 + 8
    assert h >= cells[1]["bicubic"][1] + 64
    # The label strips carry text: light pixels on the dark background above each row.
    a = np.asarray(img.convert("L"))
    for row in cells:
        x, y = row["bicubic"][:2]
        assert a[y - 20 : y - 2, x : x + 90].max() > 150
    # The bicubic column is the bicubic upscale of the input, not the network.
    f = result.frames[0]
    assert not np.array_equal(f.bicubic, f.network)


def test_bad_requests_are_named(tmp_path, clip):
    up = tiny_upscaler(False)
    with pytest.raises(UsageError, match=r"--at 9: past the end of the video"):
        make_preview(clip, up, UpscaleOptions(tile=0), at=[9.0])
    result = make_preview(clip, up, UpscaleOptions(tile=0), count=1, crop=32, thumb=64)
    (tmp_path / "p.png").write_bytes(b"keep")
    with pytest.raises(OutputExists, match="p.png: output exists"):
        write_png(tmp_path / "p.png", result, overwrite=False)
    assert (tmp_path / "p.png").read_bytes() == b"keep"
    with pytest.raises(UsageError, match="ending in .png"):
        write_png(tmp_path / "p.jpg", result, overwrite=False)


def test_pick_indices():
    times = [i / 10 for i in range(10)]
    assert pick_indices(times, 4, None) == [1, 3, 6, 8]
    assert pick_indices(times, 20, None) == list(range(10))
    assert pick_indices(times, 1, [0.45, 0.0, 0.45]) == [0, 5]


def test_cli_preview_through_the_installed_script(tmp_path, clip):
    import os
    import shutil
    import subprocess

    exe = shutil.which("adcvsr")
    assert exe is not None, "the adcvsr console script is not installed (pip install -e .)"
    w = write_tiny_weights(tmp_path / "tiny.safetensors", seed=1)
    out = tmp_path / "p.png"
    cmd = [exe, "preview", str(clip), "-o", str(out), "--weights", str(w), "--device", "cpu"]
    cmd += ["--count", "2", "--crop", "32", "--thumb", "96"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}: 2 frames" in r.stderr
    with Image.open(out) as img:
        labels = json.loads(img.text["adcvsr.preview"])
    assert [f["index"] for f in labels["frames"]] == [3, 9]
    before = out.read_bytes()
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "output exists" in r.stderr
    assert out.read_bytes() == before
