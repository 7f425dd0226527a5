"""Before/after timing of the network on the CPU: this checkout's model against other versions
of ``adcvsr_cli/model.py``, interleaved (each round calls every version once, so a busy machine
slows all alike), min and median of wall and process CPU time.

    git show d0f516c:adcvsr_cli/model.py > /tmp/model_old.py
    python benchmarks/model_ab.py /tmp/model_old.py --rounds 5 --threads 2

AdcSR dims, the benchmark's random weights (seed 0), fp32, 2 frames 64x64 -> 256x256 by default.
Each version runs in the layout it supports: the CPU default of this checkout when it has
``set_layout``, contiguous otherwise. Prints one line per version and the ratios to the first.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adcvsr_cli import bench  # noqa: E402
from adcvsr_cli import model as current  # noqa: E402
from adcvsr_cli.fastpath import default_layout  # noqa: E402


def _load(path: Path, i: int) -> ModuleType:
    name = f"_model_version_{i}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _network(mod: ModuleType, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    with torch.device("meta"):
        net = mod.AdcVSR(mod.AdcVSRDims())
    net.load_state_dict(state, strict=True, assign=True)
    net = net.eval().requires_grad_(False)
    if hasattr(net, "set_layout"):
        lay = default_layout(torch.device("cpu"))
        net.set_layout(mod.Layout(lay.unet, lay.mid, lay.up))
    return net


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("versions", nargs="*", type=Path, help="other model.py files (first: this one)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--size", type=int, default=64, help="input side (multiple of 16)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    mods = [("this", current)] + [(str(v), _load(v, i)) for i, v in enumerate(a.versions)]
    state = bench._random_state(current.adcsr_dims(), 0, torch.device("cpu"))
    nets = {name: _network(mod, state) for name, mod in mods}
    g = torch.Generator().manual_seed(1234)
    x = torch.rand(a.frames, 3, a.size, a.size, generator=g) * 2 - 1
    wall: dict[str, list[float]] = {k: [] for k in nets}
    cpu: dict[str, list[float]] = {k: [] for k in nets}
    outs: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for r in range(a.rounds + 1):  # round 0 warms up
            for name, net in nets.items():
                c0, t0 = time.process_time(), time.perf_counter()
                y = net(x)
                t, c = time.perf_counter() - t0, time.process_time() - c0
                if r:
                    wall[name].append(t)
                    cpu[name].append(c)
                outs.setdefault(name, y)
            print(f"round {r}: load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    ref = outs["this"]
    for name in nets:
        w, c = wall[name], cpu[name]
        err = float((outs[name] - ref).norm() / ref.norm())
        print(
            f"{name}: wall min {min(w):.3f} median {statistics.median(w):.3f} s, CPU min "
            f"{min(c):.3f} median {statistics.median(c):.3f} s, rel. L2 vs this {err:.1e}"
        )
        if name != "this":
            print(
                f"  this / {name}: wall min {min(wall['this']) / min(w):.3f} median "
                f"{statistics.median(wall['this']) / statistics.median(w):.3f}, CPU min "
                f"{min(cpu['this']) / min(c):.3f} median "
                f"{statistics.median(cpu['this']) / statistics.median(c):.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
