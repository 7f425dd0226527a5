"""Host transfers and synchronising calls per chunk of the engine, counted on the CPU.

    PYTHONPATH=$PWD:tests OMP_NUM_THREADS=1 python benchmarks/sync_counts.py

12 frames of 48x32 through the tiny test network (fp16 and fp32, image and temporal model,
whole frames and 2 tiles, adain-temporal colour fix; frames out as RGB, or as the yuv420p planes
an encoder takes, converted on the device), counted by tests/syncspy.py: per chunk,
``upload`` = copies to the device, ``download`` = copies to the host, ``read`` = values read
back (each a synchronisation on CUDA). Run it against an older checkout (its package first on
PYTHONPATH, this tests/ folder after it) to compare.
"""

from __future__ import annotations

import numpy as np
import torch
from syncspy import SyncSpy, sync_options
from test_pipeline import tiny_upscaler

from adcvsr_cli.engine.upscaler import ChunkStats, Upscaler
from adcvsr_cli.engine.yuv import layout_for


def planes_for(w: int, h: int, deep: bool):
    return layout_for("yuv420p", 1, False, w, h, deep_source=deep)


def main() -> None:
    print(
        f"{'model':9} {'dtype':7} {'tiles':5} {'frames':8} {'chunks':6} {'upload':>7} "
        f"{'download':>8} {'read':>5}"
    )
    for temporal in (False, True):
        for dtype in (torch.float32, torch.float16):
            for tile, planes in ((0, False), (32, False), (0, True), (32, True)):
                base = tiny_upscaler(temporal=temporal)
                up = Upscaler(base.model.to(dtype), device=torch.device("cpu"), dtype=dtype)
                opts = sync_options(temporal, tile)
                rng = np.random.default_rng(0)
                frames = [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(12)]
                stats = ChunkStats()
                process = up.processor(
                    opts,
                    lambda w, h: (4 * w, 4 * h),
                    stats=stats,
                    planes=planes_for if planes else None,
                )
                with SyncSpy().on_device([*up.model.parameters(), *up.model.buffers()]) as spy:
                    out = list(process(iter(frames)))
                assert len(out) == 12
                n = stats.chunks
                kinds = ("upload", "download", "read")
                per = [sum(v for k, v in spy.counts.items() if k.startswith(x)) / n for x in kinds]
                name = "temporal" if temporal else "image"
                print(
                    f"{name:9} {str(dtype)[6:]:7} {2 if tile else 1:5} "
                    f"{'yuv420p' if planes else 'rgb':8} {n:6} "
                    f"{per[0]:7.2f} {per[1]:8.2f} {per[2]:5.2f}"
                )


if __name__ == "__main__":
    main()
