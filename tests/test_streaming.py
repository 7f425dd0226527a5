"""Host memory does not grow with the video's length (issue 5: streaming in bounded memory)."""

import json
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest
from tiny import write_tiny_weights

PROBE = r"""
import json, resource, sys
from adcvsr_cli.pipeline import UpscaleOptions, load_model, upscale
from adcvsr_cli.media import EncodeOptions
up = load_model(sys.argv[1], device="cpu")
rep = upscale(sys.argv[2], sys.argv[3], up, UpscaleOptions(chunk=8, chunk_overlap=2),
              EncodeOptions(preset="ultrafast", crf=30))
print(json.dumps({"frames": rep.frames_out, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _clip(path, frames):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "30"})
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for i in range(frames):
            for p in s.encode(av.VideoFrame.from_ndarray(np.roll(base, i, axis=1), format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


@pytest.fixture(scope="module")
def temporal_weights(tmp_path_factory):
    p = tmp_path_factory.mktemp("w") / "tiny_t.safetensors"
    return write_tiny_weights(p, temporal=True, source="tiny")


def _peak(weights, frames, tmp_path):
    src, dst = tmp_path / f"in{frames}.mp4", tmp_path / f"out{frames}.mkv"
    _clip(src, frames)
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        [sys.executable, "-c", PROBE, str(weights), str(src), str(dst)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**__import__("os").environ, **env},
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["frames"] == frames
    return out["maxrss_kib"] / 1024


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_length(temporal_weights, tmp_path):
    short = _peak(temporal_weights, 100, tmp_path)
    long = _peak(temporal_weights, 2000, tmp_path)
    print(f"peak RSS: 100 frames {short:.1f} MiB, 2000 frames {long:.1f} MiB")
    assert long - short < 40, (short, long)
    assert shutil.which("adcvsr")
