"""Compilation over a whole file: a video with shots of varying length (scene cuts) through the
real pipeline builds one graph (torch.compile with the "eager" backend, which needs no C
compiler, and the network's compile counter); a compilation that stops is said again at the end
of the command's report. Kept small: 48x32 frames, tiny dims.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_dims, write_tiny_weights
from typer.testing import CliRunner

from adcvsr_cli.cli import app
from adcvsr_cli.engine.upscaler import CPU_DECODE_BATCH
from adcvsr_cli.fastpath import configure
from adcvsr_cli.media import EncodeOptions
from adcvsr_cli.model import AdcVSR, init_random_
from adcvsr_cli.pipeline import UpscaleOptions, Upscaler, upscale

W, H = 48, 32
SHOTS = (3, 7, 2, 5)  # frames per shot: short and long against chunks of 4


def _shot(seed: int, n: int) -> list[np.ndarray]:
    """n frames of a smooth random texture panning right by a pixel a frame."""
    g = torch.Generator().manual_seed(seed)
    tex = F.avg_pool2d(torch.rand(1, 3, H + 16, W + n + 16, generator=g), 17, 1)[0]
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return [
        (tex[:, :, i : i + W].permute(1, 2, 0).numpy() * 255).astype(np.uint8) for i in range(n)
    ]


def _video(path) -> list[int]:
    """A clip of :data:`SHOTS` (hard cuts between unrelated textures); returns the cuts."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=10, options={"preset": "ultrafast", "crf": "10"})
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        for seed, n in enumerate(SHOTS):
            for arr in _shot(seed, n):
                for packet in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
    return [sum(SHOTS[:i]) for i in range(1, len(SHOTS))]


@pytest.mark.parametrize("temporal", [False, True], ids=["image", "temporal"])
def test_a_file_with_shots_of_varying_length_compiles_once(tmp_path, temporal):
    import torch._dynamo

    torch._dynamo.reset()
    src = tmp_path / "shots.mp4"
    cuts = _video(src)
    model = AdcVSR(tiny_dims(temporal)).eval()
    init_random_(model)
    cpu = torch.device("cpu")
    up = Upscaler(model, device=cpu, dtype=torch.float32, compile=True)
    assert up.static_shapes
    # The Upscaler's own configuration, with the backend that needs no C compiler.
    up.network = configure(
        up.model,
        device=cpu,
        dtype=torch.float32,
        fastpath=up.network.fp,
        decode_group=CPU_DECODE_BATCH,
        compile_backend="eager",
    )
    events: list[dict] = []
    options = UpscaleOptions(chunk=4, chunk_overlap=2 if temporal else 0, batch=4, tile=0)
    report = upscale(
        src, tmp_path / "out.mp4", up, options, EncodeOptions(), on_event=events.append
    )
    assert report.scene_cuts == cuts  # the shots are really there, of 3, 7, 2 and 5 frames
    assert report.frames_out == sum(SHOTS) and (report.out_width, report.out_height) == (
        4 * W,
        4 * H,
    )
    info = up.network.info
    assert info["compiled"] and info["compiles"] == 1, info
    assert info["compile_fallback"] is None
    assert not [e for e in events if e.get("type") == "warning"]
    torch._dynamo.reset()


def test_the_command_report_ends_with_a_compile_fallback(tmp_path, monkeypatch):
    def no_compiler(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("no compiler here\nsecond line")

        return run

    monkeypatch.setattr(torch, "compile", no_compiler)
    weights = write_tiny_weights(tmp_path / "tiny.safetensors")
    src, dst = tmp_path / "shots.mp4", tmp_path / "out.mp4"
    _video(src)
    args = ["upscale", str(src), str(dst), "--weights", str(weights), "--device", "cpu"]
    r = CliRunner().invoke(app, [*args, "--compile"])
    assert r.exit_code == 0, r.output
    said = (
        "compilation (--compile) stopped: RuntimeError: no compiler here; the network runs "
        "uncompiled from here"
    )
    lines = [line.strip() for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1] == f"warning: this run: {said}"
    assert lines.count(f"warning: {said}") == 1  # when it happened, and once at the end
    assert dst.is_file()
    r = CliRunner().invoke(app, [*args, "-y"])  # nothing fell back: no such line
    assert r.exit_code == 0 and "this run:" not in r.stderr
