"""Measure how much each colour fix makes a video flicker, on real clips.

    python benchmarks/colorfix_flicker.py --weights W.safetensors [--frames 25] [--crop 64] \
        [--clips ../shared/media/dove-demo] [--json out.json]

For each clip: the first ``--frames`` frames, centre-cropped to ``--crop`` LR pixels (so that the
full network runs in minutes on a CPU), go through the network once; the raw output is then
colour-fixed by every mode. Two figures per mode, each relative to the same figure of the input
(1.0 = the output flickers as much as the input does; the input's own changes are real motion
and light):

- mean flicker: mean absolute frame-to-frame change of the per-frame channel means;
- std flicker: the same for the per-frame channel standard deviations (contrast pumping).

Scene cuts are left out of both (detected on the LR frames).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import av
import numpy as np
import torch

from adcvsr_cli.engine.colorfix import COLOR_FIX_MODES, make_color_fix
from adcvsr_cli.engine.scenes import detect_cuts
from adcvsr_cli.weights import load_native


def _stat_flicker(stats: torch.Tensor, cuts: list[int]) -> float:
    d = (stats[1:] - stats[:-1]).abs().mean(dim=1)
    keep = [i for i in range(d.shape[0]) if (i + 1) not in cuts]
    return float(d[keep].mean()) if keep else 0.0


def figures(frames: torch.Tensor, cuts: list[int]) -> tuple[float, float]:
    """(mean flicker, std flicker) of (T, 3, H, W) frames in [0, 1]."""
    flat = frames.double().flatten(2)
    return _stat_flicker(flat.mean(-1), cuts), _stat_flicker(flat.std(-1), cuts)


def load_clip(path: Path, frames: int, crop: int) -> torch.Tensor:
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            a = f.to_ndarray(format="rgb24")
            h, w = a.shape[:2]
            y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            out.append(torch.from_numpy(a[y0 : y0 + crop, x0 : x0 + crop].copy()).permute(2, 0, 1))
            if len(out) == frames:
                break
    return torch.stack(out).float() / 255 * 2 - 1


def measure(model, clip: torch.Tensor) -> dict[str, dict[str, float]]:
    cuts = detect_cuts(list(clip))
    with torch.inference_mode():
        sr = torch.cat([model(clip[i : i + 2]) for i in range(0, clip.shape[0], 2)])
    lr01 = clip / 2 + 0.5
    base_mean, base_std = figures(lr01, cuts)
    row = {"input": {"mean": base_mean, "std": base_std}, "cuts": cuts}
    for mode in COLOR_FIX_MODES:
        fix = make_color_fix(mode)
        flags = [i in cuts for i in range(clip.shape[0])]
        out = torch.cat(
            [fix(sr[i : i + 1], clip[i : i + 1], flags[i : i + 1]) for i in range(sr.shape[0])]
        )
        m, s = figures((out / 2 + 0.5).clamp(0, 1), cuts)
        row[mode] = {"mean": m / max(base_mean, 1e-12), "std": s / max(base_std, 1e-12)}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="a native .safetensors checkpoint")
    ap.add_argument(
        "--clips", default=str(Path(__file__).resolve().parents[2] / "shared/media/dove-demo")
    )
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    model = load_native(a.weights)
    results = {}
    for clip_path in sorted(Path(a.clips).glob("*.mp4")):
        results[clip_path.name] = measure(model, load_clip(clip_path, a.frames, a.crop))
        r = results[clip_path.name]
        print(
            f"{clip_path.name}: input mean {r['input']['mean']:.4f} std {r['input']['std']:.4f}; "
            + "; ".join(f"{m} {r[m]['mean']:.2f}/{r[m]['std']:.2f}" for m in COLOR_FIX_MODES),
            flush=True,
        )
    print(
        "\nflicker relative to the input (mean / std of per-frame channel statistics; 1.00 = as the input)"
    )
    print(f"{'clip':10s} " + " ".join(f"{m:>20s}" for m in COLOR_FIX_MODES))
    for name, r in results.items():
        print(
            f"{name:10s} "
            + " ".join(f"{r[m]['mean']:9.2f} /{r[m]['std']:8.2f} " for m in COLOR_FIX_MODES)
        )
    avg = {
        m: (
            float(np.mean([r[m]["mean"] for r in results.values()])),
            float(np.mean([r[m]["std"] for r in results.values()])),
        )
        for m in COLOR_FIX_MODES
    }
    print(
        f"{'mean':10s} " + " ".join(f"{avg[m][0]:9.2f} /{avg[m][1]:8.2f} " for m in COLOR_FIX_MODES)
    )
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "frames": a.frames,
                    "crop": a.crop,
                    "weights": a.weights,
                    "clips": results,
                    "mean": avg,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
