"""Time ``adcvsr upscale``'s pipeline of whichever checkout is first on PYTHONPATH, to compare
two commits in one sitting (run it alternately with each one's package first):

    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old python benchmarks/pipeline_ab.py 854x480x4 null 3
    PYTHONPATH=$PWD     python benchmarks/pipeline_ab.py 854x480x4 null 3

Arguments: the generated clip WxHxFRAMES (written to the system's temporary folder on first use),
the network (``null``: nearest x4, ``small``: the benchmark's tiny random network) and the timed
runs after one warm-up. One torch thread, the CPU, libx264 CRF 18 medium, colour fix adain.
Prints "wall/CPU" seconds of each timed run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str]) -> int:
    from adcvsr_cli import bench
    from adcvsr_cli.floor import NullNetwork
    from adcvsr_cli.media import EncodeOptions
    from adcvsr_cli.pipeline import UpscaleOptions, Upscaler, upscale

    size, network, runs = argv[0], argv[1], int(argv[2])
    torch.set_num_threads(1)
    w, h, n = (int(v) for v in size.split("x"))
    folder = Path(tempfile.gettempdir())
    src = folder / f"adcvsr-ab-{size}.mp4"
    if not src.exists():
        bench._write_clip(src, bench._generated_frames(n, h, w), 25)
    cpu, dims = torch.device("cpu"), bench.tiny_dims()
    if network == "null":
        net = NullNetwork(dims)
    else:
        net = bench.materialize(dims, bench._random_state(dims, 0, cpu), cpu, torch.float32)
    up = Upscaler(net, device=cpu, dtype=torch.float32)
    encode = EncodeOptions(
        codec="libx264", crf=18, preset="medium", pix_fmt="yuv420p", no_audio=True, overwrite=True
    )
    times = []
    for r in range(runs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        upscale(
            src, folder / f"adcvsr-ab-{network}.mp4", up, UpscaleOptions(color_fix="adain"), encode
        )
        if r:  # the first run warms up
            times.append(f"{time.perf_counter() - t0:.3f}/{time.process_time() - c0:.3f}")
    print(" ".join(times))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
