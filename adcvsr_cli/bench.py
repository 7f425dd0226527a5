"""Benchmark of the network and the pipeline: ``python -m adcvsr_cli.bench`` or
``python benchmarks/bench.py``.

Protocols (sizes of the full run; ``small`` runs, the default on the CPU, are given in brackets):

- **A** (the paper's): 25 frames of 128x128 -> 512x512 [2 frames of 32x32], model only, for the
  AdcSR network (given weights, or random weights of its dims) and for AdcVSR dims (temporal
  blocks on, random weights);
- **B**: 854x480 -> 3416x1920 frames [one 64x48 frame, tiles forced], model only, through the
  pipeline's tiling with its automatic tile choice;
- **L**: every memory layout of the network (contiguous or channels-last per part: UNet,
  decoder mid block, decoder up blocks), model only, 25 frames of 128x128 [2 frames of
  64x64], interleaved rounds, min and median; says which is fastest here and which the device's
  default is (``fastpath.DEFAULT_LAYOUTS``);
- **C**: end to end, file to file through :func:`adcvsr_cli.pipeline.upscale`, on
  ``../shared/media/dove-demo/005.mp4`` and a longer clip made from it [a short generated clip
  and the first frames of 005.mp4, cropped], next to the model-only rate at the same size.

Each protocol runs once per *variant* (see :mod:`adcvsr_cli.fastpath`: ``pipeline``, ``eager``,
``channels_last``, ``compile``...), so one run on one card measures before and after. Times are
CUDA events on a GPU, ``perf_counter`` on the CPU (the end-to-end protocol C is always wall
time). FLOPs are counted on the ``meta`` device with :class:`torch.utils.flop_counter.FlopCounterMode`
(multiply-add = 2): ``gflop_per_frame`` counts every matrix product, attention included;
``gflop_per_frame_conv_linear`` only convolutions and linear layers, the convention of the
990 GFLOP per 512x512 frame in the project's docs.

The library part never prints: progress goes to ``on_event``; :func:`main` prints.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import functools
import gc
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .engine.cpumem import keep_freed_memory
from .engine.device import synchronize
from .errors import AdcvsrError, UsageError
from .fastpath import FastPath, parse_variants, strict_fp32
from .model import (
    AdcVSR,
    AdcVSRDims,
    DecoderDims,
    Layout,
    TemporalDims,
    UNetDims,
    adcsr_dims,
    scale_standard_normal,
)

SCHEMA = "adcvsr-bench/1"
PROTOCOLS = ("A", "B", "C", "L")
REFERENCE_GFLOP_512 = 990.0  # conv + linear per 512x512 output frame of the AdcSR dims
PRECISION_TOLERANCE = 1e-2

Event = dict[str, Any]
OnEvent = Callable[[Event], None]

_DTYPE_NAMES = {
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.float64: "fp64",
}


def _noop(_: Event) -> None:
    pass


def _sig(x: float, digits: int = 6) -> float:
    """``x`` rounded to ``digits`` significant digits (JSON stays readable, ratios stay exact)."""
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x


# ----------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """Input sizes (H, W in LR pixels) of one benchmark mode."""

    a_frames: int
    a_hw: tuple[int, int]
    b_hw: tuple[int, int]
    b_frames: int
    b_tile: int | None  # None: the pipeline's automatic choice
    b_tile_overlap: int
    c_short_frames: int | None  # None: the whole file
    c_crop: tuple[int, int] | None  # (H, W) centre crop of 005.mp4, None: full frames
    c_generated: tuple[int, int, int] | None  # (frames, H, W) of a generated clip
    matmul_n: int
    l_frames: int = 25
    l_hw: tuple[int, int] = (128, 128)
    # (frames, H, W) of the generated clips of protocol C's floor comparison
    floor: tuple[tuple[int, int, int], ...] = ((50, 480, 854), (25, 1080, 1920))


# protocol C's floor networks: nearest x4 (no weights) and the tiny random network
FLOOR_NETWORKS = ("null", "small")

FULL_SIZES = Sizes(
    a_frames=25,
    a_hw=(128, 128),
    b_hw=(480, 854),
    b_frames=1,
    b_tile=None,
    b_tile_overlap=32,
    c_short_frames=None,
    c_crop=None,
    c_generated=None,
    matmul_n=8192,
)
SMALL_SIZES = Sizes(
    a_frames=2,
    a_hw=(32, 32),
    b_hw=(48, 64),
    b_frames=1,
    b_tile=48,
    b_tile_overlap=16,
    c_short_frames=8,
    c_crop=(48, 64),
    c_generated=(8, 32, 48),
    matmul_n=1024,
    l_frames=2,
    l_hw=(64, 64),
    floor=((8, 96, 160),),
)


def tiny_dims(temporal: bool = False) -> AdcVSRDims:
    """Small dims with the network's structure, for CPU smoke runs (about 0.1 M parameters)."""
    return AdcVSRDims(
        unet=UNetDims(widths=(16, 32, 32, 32), head_dim=8, out_channels=16),
        decoder=DecoderDims(latent_channels=16, widths=(16, 16, 8, 8), layers_per_block=2),
        temporal=TemporalDims() if temporal else None,
    )


# ----------------------------------------------------------------------------- measurements


def device_name(device: torch.device) -> str:
    """The card's name, or the CPU model from /proc/cpuinfo (with the core count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def time_calls(
    fn: Callable[[], Any], runs: int, warmup: int, device: torch.device, wall: bool = False
) -> tuple[list[float], Any]:
    """Milliseconds of ``runs`` calls of ``fn`` after ``warmup`` calls, and the last result.

    CUDA events on a GPU (unless ``wall``), ``perf_counter`` otherwise.
    """
    result = None
    for _ in range(warmup):
        result = fn()
    synchronize(device)
    times: list[float] = []
    use_events = device.type == "cuda" and not wall
    for _ in range(runs):
        if use_events:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            result = fn()
            end.record()
            end.synchronize()
            times.append(float(start.elapsed_time(end)))
        else:
            t0 = time.perf_counter()
            result = fn()
            synchronize(device)
            times.append((time.perf_counter() - t0) * 1000.0)
    return times, result


def _timing_fields(times: list[float], frames: int) -> dict[str, Any]:
    med = statistics.median(times)
    return {
        "runs": len(times),
        "ms_median": round(med, 4),
        "ms_min": round(min(times), 4),
        "ms_max": round(max(times), 4),
        "ms_all": [round(t, 4) for t in times],
        "fps": _sig(frames * 1000.0 / med),
        "timer": "",
    }


class PeakMemory:
    """Peak device memory: ``torch.cuda.max_memory_allocated`` on a GPU (reset per measure),
    the process's peak resident set (VmHWM, reset through /proc/self/clear_refs where the
    kernel allows it, else the lifetime ``ru_maxrss``) on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_max_memory_allocated" if device.type == "cuda" else "process_peak_rss"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.kind = "process_peak_rss"
        except OSError:
            self.kind = "process_lifetime_peak_rss"

    def read(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def matmul_rate(device: torch.device, n: int, reps: int = 10) -> dict[str, Any]:
    """Measured dense matrix product rate: bf16 n^3 on a GPU, fp32 n^3 on the CPU."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    times, _ = time_calls(lambda: a @ b, reps, 3, device)
    best = min(times)
    med = statistics.median(times)
    flop = 2.0 * n**3
    return {
        "dtype": _DTYPE_NAMES[dtype],
        "n": n,
        "runs": reps,
        "ms_median": round(med, 4),
        "tflops": _sig(flop / (med / 1000.0) / 1e12),
        "tflops_best": _sig(flop / (best / 1000.0) / 1e12),
    }


@functools.lru_cache(maxsize=64)
def _count_flops_cached(dims_json: str, n: int, h: int, w: int, frames: int) -> tuple:
    from torch.utils.flop_counter import FlopCounterMode

    dims = AdcVSRDims.from_json(dims_json)
    with torch.device("meta"):
        model = AdcVSR(dims)
        x = torch.empty(n, 3, h, w)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, frames)
    counts = counter.get_flop_counts()
    total = counter.get_total_flops()
    glob = counts.get("Global", {})
    conv_linear = sum(v for k, v in glob.items() if str(k).split(".")[-1] in _CONV_LINEAR_OPS)
    unet = sum(counts.get("AdcVSR.unet", {}).values())
    mid = sum(counts.get("AdcVSR.decoder.mid_block", {}).values())
    ops = {str(k): int(v) for k, v in glob.items()}
    return int(total), int(conv_linear), int(unet + mid), tuple(sorted(ops.items()))


_CONV_LINEAR_OPS = {"convolution", "mm", "addmm", "_convolution", "conv2d", "linear"}


def count_flops(dims: AdcVSRDims, n: int, h: int, w: int, frames: int = 1) -> dict[str, Any]:
    """FLOPs (multiply-add = 2) of one forward on (n, 3, h, w) with clip length ``frames``.

    ``total``: every matrix product (convolutions, linear layers and the attention products);
    ``conv_linear``: convolutions and linear layers only; ``attention``: the rest (Q K^T, A V);
    ``unet_and_mid``: the UNet plus the decoder mid block; ``decoder_up``: the rest.
    """
    total, conv_linear, unet_mid, ops = _count_flops_cached(dims.to_json(), n, h, w, frames)
    return {
        "total": total,
        "conv_linear": conv_linear,
        "attention": total - conv_linear,
        "unet_and_mid": unet_mid,
        "decoder_up": total - unet_mid,
        "by_op": dict(ops),
    }


def flops_reference(dims: AdcVSRDims | None = None) -> dict[str, Any]:
    """GFLOP per 512x512 output frame (input 128x128) of ``dims`` (default: the AdcSR dims)."""
    dims = dims or adcsr_dims()
    s = dims.scale
    c = count_flops(dims, 1, 512 // s, 512 // s, 1)
    return {
        "dims": "adcsr" if dims == adcsr_dims() else "custom",
        "output": [512, 512],
        "gflop_per_frame": round(c["total"] / 1e9, 3),
        "gflop_per_frame_conv_linear": round(c["conv_linear"] / 1e9, 3),
        "gflop_attention_products": round(c["attention"] / 1e9, 3),
        "gflop_unet_and_decoder_mid": round(c["unet_and_mid"] / 1e9, 3),
        "gflop_decoder_up": round(c["decoder_up"] / 1e9, 3),
        "docs_gflop_conv_linear": REFERENCE_GFLOP_512,
        "conv_linear_vs_docs": round(c["conv_linear"] / 1e9 / REFERENCE_GFLOP_512, 5),
    }


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a64, b64 = a.detach().double(), b.detach().double().to(a.device)
    den = float(b64.norm())
    return float((a64 - b64).norm()) / den if den > 0 else float("inf")


# ----------------------------------------------------------------------------- models


@dataclass
class ModelSpec:
    """One network the benchmark runs: its dims and where its weights come from."""

    name: str
    dims: AdcVSRDims
    weights: str | None = None  # a native checkpoint; None: random weights
    seed: int = 0

    @property
    def kind(self) -> str:
        return "temporal" if self.dims.has_temporal else "image"

    def describe(self) -> str:
        return f"{self.name} ({'weights ' + self.weights if self.weights else 'random weights'})"


def _model_specs(
    weights: str | os.PathLike | None, dims_mode: str, temporal: bool, seed: int
) -> list[ModelSpec]:
    from .weights import read_native_header

    if weights is not None:
        header = read_native_header(weights)
        specs = [ModelSpec(Path(weights).stem, header.dims, str(weights), seed)]
        if temporal and not header.dims.has_temporal:
            specs.append(
                ModelSpec("adcvsr-dims", replace(header.dims, temporal=TemporalDims()), None, seed)
            )
        return specs
    if dims_mode == "tiny":
        specs = [ModelSpec("adcsr-tiny", tiny_dims(False), None, seed)]
        if temporal:
            specs.append(ModelSpec("adcvsr-tiny", tiny_dims(True), None, seed))
        return specs
    specs = [ModelSpec("adcsr-dims", adcsr_dims(), None, seed)]
    if temporal:
        specs.append(
            ModelSpec("adcvsr-dims", replace(adcsr_dims(), temporal=TemporalDims()), None, seed)
        )
    return specs


def _random_state(dims: AdcVSRDims, seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Deterministic random float32 weights (the scale rules of ``model.init_random_``), made
    on ``device`` (fast on a GPU), then kept on the CPU."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in AdcVSR(dims).state_dict().items()}
    gen_dev = device if device.type == "cuda" else torch.device("cpu")
    g = torch.Generator(device=gen_dev).manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for k, shape in shapes.items():
        out[k] = scale_standard_normal(k, torch.randn(shape, generator=g, device=gen_dev)).cpu()
    return out


def _load_state(spec: ModelSpec, device: torch.device) -> dict[str, torch.Tensor]:
    if spec.weights is None:
        return _random_state(spec.dims, spec.seed, device)
    from .weights import load_native

    return dict(load_native(spec.weights, device="cpu", dtype=torch.float32).state_dict())


def materialize(
    dims: AdcVSRDims, state: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype
) -> AdcVSR:
    """A network on ``device`` in ``dtype`` holding ``state`` (no throw-away initialisation)."""
    with torch.device("meta"):
        model = AdcVSR(dims)
    model.load_state_dict(
        {k: v.to(device=device, dtype=dtype) for k, v in state.items()}, strict=True, assign=True
    )
    return model.eval().requires_grad_(False)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- the run context


@dataclass
class _Ctx:
    device: torch.device
    dtype: torch.dtype
    sizes: Sizes
    small: bool
    runs: int
    warmup: int
    e2e_runs: int
    variants: list[FastPath]
    emit: OnEvent
    device_name: str
    matmul_tflops: float
    peak: PeakMemory
    notes: list[str]
    precision_checks: bool = True
    flicker: bool = False  # protocol C: run the flicker meter on each end-to-end output
    floor: bool = True
    # protocol C's floor: encoder options of both sides (e.g. {"threads": "1"})
    floor_encoder: dict[str, str] = field(default_factory=dict)
    floor_networks: tuple[str, ...] = FLOOR_NETWORKS

    @property
    def precision(self) -> str:
        return _DTYPE_NAMES[self.dtype]

    def progress(self, message: str) -> None:
        self.emit({"type": "bench", "message": message})

    def rate_fields(self, flop_per_run: float, ms_median: float) -> dict[str, Any]:
        tflops = flop_per_run / (ms_median / 1000.0) / 1e12
        return {
            "tflops_achieved": _sig(tflops),
            "matmul_tflops": self.matmul_tflops,
            "matmul_fraction": _sig(tflops / self.matmul_tflops) if self.matmul_tflops else None,
        }


def _make_upscaler(
    ctx: _Ctx, spec: ModelSpec, state: dict[str, torch.Tensor], fp: FastPath
) -> tuple[Any, dict[str, Any]]:
    """A pipeline :class:`Upscaler` configured for variant ``fp`` exactly as ``adcvsr upscale
    --fastpath`` configures it (``pipeline``: as it runs without the option), and its info."""
    from .pipeline import Upscaler

    model = materialize(spec.dims, state, ctx.device, torch.float32)
    up = Upscaler(
        model,
        device=ctx.device,
        dtype=ctx.dtype,
        fastpath=None if fp == FastPath() else fp.name,
        on_event=ctx.emit,
    )
    return up, up.network.info


def _entry_base(ctx: _Ctx, protocol: str, spec: ModelSpec, fp: FastPath) -> dict[str, Any]:
    return {
        "protocol": protocol,
        "model": spec.name,
        "model_kind": spec.kind,
        "weights": spec.weights or "random",
        "variant": fp.name,
        "device": ctx.device_name,
        "precision": ctx.precision,
    }


# What makes one variant fail while the others still run: RuntimeError (out of memory, a kernel
# missing for the dtype on this device, a torch.compile backend failure), OSError (protocol C's
# files), AdcvsrError (the pipeline's typed errors). Each is recorded in the variant's entry and
# sent as a warning; anything else is a bug and stops the benchmark.
VARIANT_ERRORS = (RuntimeError, OSError, AdcvsrError)


def _variant_error(ctx: _Ctx, base: dict[str, Any], e: BaseException, what: str) -> dict[str, Any]:
    msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    ctx.emit({"type": "warning", "message": f"{what} failed: {msg}"})
    return {**base, "error": msg[:500]}


# ----------------------------------------------------------------------------- protocol A


def _precision_checks(
    ctx: _Ctx,
    spec: ModelSpec,
    state: dict[str, torch.Tensor],
    x: torch.Tensor,
    frames: int,
    ref: torch.Tensor,
) -> list[dict[str, Any]]:
    """Relative L2 of lower precisions against the float32 reference, same input and weights.

    On a CUDA card: bf16 and fp16 (weights cast) and bf16 autocast, against strict fp32 (TF32
    off). On the CPU: fp32 against float64, and bf16 (weights cast) against fp32.
    """
    checks: list[dict[str, Any]] = []
    dev = ctx.device
    if dev.type == "cuda":
        cases = [("bf16", torch.bfloat16, False), ("fp16", torch.float16, False)]
        cases.append(("bf16-autocast", torch.bfloat16, True))
    else:
        m64 = materialize(spec.dims, state, dev, torch.float64)
        with torch.inference_mode():
            ref64 = m64(x.double(), frames)
        del m64
        checks.append(
            {
                "precision": "fp32",
                "reference": "fp64",
                "rel_l2": rel_l2(ref, ref64),
                "tolerance": 1e-4,
            }
        )
        cases = [("bf16", torch.bfloat16, False)]
    for label, dt, autocast in cases:
        m = materialize(spec.dims, state, dev, torch.float32 if autocast else dt)
        with torch.inference_mode():
            if autocast:
                with torch.autocast(dev.type, dtype=dt):
                    y = m(x, frames)
            else:
                y = m(x.to(dt), frames)
        finite = bool(torch.isfinite(y).all())
        err = rel_l2(y, ref)
        checks.append(
            {
                "precision": label,
                "reference": "fp32",
                "rel_l2": err,
                "finite": finite,
                "tolerance": PRECISION_TOLERANCE,
                "pass": finite and err < PRECISION_TOLERANCE,
            }
        )
        del m, y
        _free(dev)
    return checks


def _protocol_a(ctx: _Ctx, spec: ModelSpec, state: dict[str, torch.Tensor]) -> list[dict]:
    n, (h, w) = ctx.sizes.a_frames, ctx.sizes.a_hw
    frames = n if spec.dims.has_temporal else 1
    dev = ctx.device
    g = torch.Generator(device=dev).manual_seed(1234)
    x = torch.rand(n, 3, h, w, generator=g, device=dev) * 2 - 1
    s = spec.dims.scale
    fl = count_flops(spec.dims, n, h, w, frames)
    ctx.progress(f"A {spec.name}: fp32 reference and precision checks")
    m32 = materialize(spec.dims, state, dev, torch.float32)
    with strict_fp32(dev), torch.inference_mode():
        ref = m32(x, frames).float()
    del m32
    _free(dev)
    checks = _precision_checks(ctx, spec, state, x, frames, ref) if ctx.precision_checks else []
    out = []
    for fp in ctx.variants:
        base = _entry_base(ctx, "A", spec, fp)
        base.update(
            input_size=[w, h],
            output_size=[s * w, s * h],
            frames_per_run=n,
            clip_len=frames,
        )
        ctx.progress(f"A {spec.name} {fp.name}: {n} x {w}x{h} -> {s * w}x{s * h}")
        try:
            up, info = _make_upscaler(ctx, spec, state, fp)
            fwd = up.network
            with torch.inference_mode():
                t0 = time.perf_counter()
                fwd(x, frames)  # first call: compilation, cuDNN choices, graph capture
                synchronize(dev)
                first_s = time.perf_counter() - t0
                ctx.peak.reset()

                def call(fwd=fwd) -> torch.Tensor:
                    return fwd(x, frames)

                times, y = time_calls(call, ctx.runs, ctx.warmup, dev)
                peak = ctx.peak.read()
            entry = {**base, **_timing_fields(times, n)}
            entry["timer"] = "cuda_events" if dev.type == "cuda" else "perf_counter"
            entry.update(
                first_call_s=round(first_s, 3),
                peak_memory_bytes=peak,
                peak_memory_kind=ctx.peak.kind,
                gflop_per_frame=_sig(fl["total"] / n / 1e9),
                gflop_per_frame_conv_linear=_sig(fl["conv_linear"] / n / 1e9),
                gflop_per_run=_sig(fl["total"] / 1e9),
                **ctx.rate_fields(fl["total"], entry["ms_median"]),
                rel_l2_vs_fp32=rel_l2(y.float(), ref),
                output_finite=bool(torch.isfinite(y).all()),
                precision_checks=checks,
                fastpath=_clean_info(info),
            )
            del y, fwd, up
        except VARIANT_ERRORS as e:
            entry = _variant_error(ctx, base, e, f"A {spec.name} {fp.name}")
        _free(dev)
        out.append(entry)
        ctx.emit({"type": "result", "entry": entry})
    return out


def _clean_info(info: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(info, default=str))


# ----------------------------------------------------------------------------- protocol L


def _protocol_l(ctx: _Ctx, spec: ModelSpec, state: dict[str, torch.Tensor]) -> list[dict]:
    """Every memory layout of the network (:meth:`Layout.all_options`), model only, through
    :func:`~adcvsr_cli.fastpath.configure`: rounds of one call per layout (interleaved, so a
    busy machine slows all alike), min and median of ``ctx.runs`` rounds after ``ctx.warmup``.
    Each output is compared with the contiguous one (relative L2)."""
    from .fastpath import FastPath, configure, default_layout

    n, (h, w) = ctx.sizes.l_frames, ctx.sizes.l_hw
    frames = n if spec.dims.has_temporal else 1
    dev, s = ctx.device, spec.dims.scale
    g = torch.Generator(device=dev).manual_seed(1234)
    x = torch.rand(n, 3, h, w, generator=g, device=dev) * 2 - 1
    model = materialize(spec.dims, state, dev, torch.float32)
    layouts = Layout.all_options()
    times: dict[Layout, list[float]] = {lay: [] for lay in layouts}
    outs: dict[Layout, torch.Tensor] = {}
    ctx.progress(f"L {spec.name}: {len(layouts)} layouts, {n} x {w}x{h} -> {s * w}x{s * h}")
    for r in range(ctx.warmup + ctx.runs):
        for lay in layouts:
            fwd = configure(model, device=dev, dtype=ctx.dtype, fastpath=FastPath(layout=lay))
            t, y = time_calls(functools.partial(fwd, x, frames), 1, 0, dev)
            if r >= ctx.warmup:
                times[lay].append(t[0])
            outs.setdefault(lay, y.float().cpu())
    best = min(layouts, key=lambda lay: min(times[lay]))
    default = default_layout(dev)
    out = []
    for lay in layouts:
        entry = {
            **_entry_base(ctx, "L", spec, FastPath(layout=lay)),
            **_timing_fields(times[lay], n),
        }
        entry["timer"] = "cuda_events" if dev.type == "cuda" else "perf_counter"
        entry.update(
            input_size=[w, h],
            output_size=[s * w, s * h],
            frames_per_run=n,
            clip_len=frames,
            layout=lay.name,
            interleaved=True,
            rel_l2_vs_fp32=rel_l2(outs[lay], outs[Layout()]),
            fastest=lay == best,
            default=lay == default,
        )
        out.append(entry)
        ctx.emit({"type": "result", "entry": entry})
    del model, outs
    _free(dev)
    return out


# ----------------------------------------------------------------------------- protocol B


def _protocol_b(ctx: _Ctx, spec: ModelSpec, state: dict[str, torch.Tensor]) -> list[dict]:
    from .engine.chunking import BackoffRunner, Plan
    from .engine.tiling import MIN_TILE, plan_tiles
    from .pipeline import UpscaleOptions

    sz = ctx.sizes
    (h, w), n = sz.b_hw, sz.b_frames
    if spec.dims.has_temporal:
        n = max(n, 2)
    frames = n if spec.dims.has_temporal else 1
    dev = ctx.device
    s = spec.dims.scale
    g = torch.Generator(device=dev).manual_seed(99)
    x = torch.rand(n, 3, h, w, generator=g, device=dev) * 2 - 1
    out = []
    for fp in ctx.variants:
        base = _entry_base(ctx, "B", spec, fp)
        base.update(
            input_size=[w, h], output_size=[s * w, s * h], frames_per_run=n, clip_len=frames
        )
        ctx.progress(f"B {spec.name} {fp.name}: {n} x {w}x{h} -> {s * w}x{s * h}")
        try:
            up, info = _make_upscaler(ctx, spec, state, fp)
            if sz.b_tile is None:
                plan = up.initial_plan(h, w, UpscaleOptions(batch=n, chunk=n))
                tiling = "auto"
            else:
                plan = Plan(tile=sz.b_tile, batch=n)
                tiling = "forced"
            runner = BackoffRunner(plan, Plan(tile=MIN_TILE, batch=1), frame_hw=(h, w))
            overlap = sz.b_tile_overlap

            def run(up=up, runner=runner, overlap=overlap) -> torch.Tensor:
                return up.upscale_clip(x, runner, overlap, "replicate")

            with torch.inference_mode():
                t0 = time.perf_counter()
                run()
                synchronize(dev)
                first_s = time.perf_counter() - t0
                ctx.peak.reset()
                times, y = time_calls(run, ctx.runs, ctx.warmup, dev)
                peak = ctx.peak.read()
            tiles = plan_tiles(h, w, runner.plan.tile, overlap, spec.dims.multiple)
            total = sum(count_flops(spec.dims, n, t.h, t.w, frames)["total"] for t in tiles)
            conv_lin = sum(
                count_flops(spec.dims, n, t.h, t.w, frames)["conv_linear"] for t in tiles
            )
            entry = {**base, **_timing_fields(times, n)}
            entry["timer"] = "cuda_events" if dev.type == "cuda" else "perf_counter"
            entry.update(
                first_call_s=round(first_s, 3),
                tiling=tiling,
                tile=runner.plan.tile,
                tile_overlap=overlap,
                tiles=len(tiles),
                plan_changes=list(runner.changes),
                peak_memory_bytes=peak,
                peak_memory_kind=ctx.peak.kind,
                gflop_per_frame=_sig(total / n / 1e9),
                gflop_per_frame_conv_linear=_sig(conv_lin / n / 1e9),
                gflop_per_run=_sig(total / 1e9),
                **ctx.rate_fields(total, entry["ms_median"]),
                output_finite=bool(torch.isfinite(y).all()),
                fastpath=_clean_info(info),
            )
            del y, up
        except VARIANT_ERRORS as e:
            entry = _variant_error(ctx, base, e, f"B {spec.name} {fp.name}")
        _free(dev)
        out.append(entry)
        ctx.emit({"type": "result", "entry": entry})
    return out


# ----------------------------------------------------------------------------- protocol C


@dataclass
class Clip:
    label: str
    path: Path
    frames: int
    width: int
    height: int
    origin: str


def _read_frames(path: Path, limit: int | None = None) -> tuple[list, Any]:
    import av

    frames = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        rate = stream.average_rate or 25
        for frame in c.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if limit is not None and len(frames) >= limit:
                break
    return frames, rate


def _write_clip(path: Path, frames: Sequence[Any], rate: Any) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "veryfast"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        for arr in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)


def _generated_frames(n: int, h: int, w: int) -> list:
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(7)
    frames = []
    for i in range(n):
        img = np.stack(
            [(xx * 4 + i * 5) % 256, (yy * 4 + i * 3) % 256, ((xx + yy) * 2 + i * 7) % 256], -1
        ).astype(np.float64)
        img += rng.normal(0, 4, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def find_shared_file(relative: str, shared: str | os.PathLike | None = None) -> Path | None:
    """A file of the shared folder (``--shared``, else ``$ADCVSR_SHARED``; the checkout's own
    lookup lives in ``benchmarks/bench.py``); None when it is in neither."""
    roots = [shared, os.environ.get("ADCVSR_SHARED")]
    for root in roots:
        if not root:
            continue
        for candidate in (Path(root) / relative, Path(root) / Path(relative).name):
            if candidate.is_file():
                return candidate
    return None


def prepare_clips(
    sizes: Sizes,
    workdir: Path,
    clip: str | os.PathLike | None = None,
    long_repeat: int = 4,
    shared: str | os.PathLike | None = None,
    notes: list[str] | None = None,
) -> list[Clip]:
    """The inputs of protocol C. Full: the clip (005.mp4) and a longer clip made from it
    (played forwards and backwards ``long_repeat`` times, so no hard cut). Small: a generated
    clip and the first frames of the clip, centre-cropped."""
    notes = notes if notes is not None else []
    src = Path(clip) if clip else find_shared_file("media/dove-demo/005.mp4", shared)
    if src is not None and not src.is_file():
        raise UsageError(f"--clip {src}: no such file")
    clips: list[Clip] = []
    if sizes.c_generated is not None:
        n, h, w = sizes.c_generated
        p = workdir / "generated.mp4"
        _write_clip(p, _generated_frames(n, h, w), 16)
        clips.append(Clip("generated", p, n, w, h, f"generated {w}x{h}, {n} frames"))
    if src is None:
        notes.append(
            "005.mp4 not found (looked in --shared and $ADCVSR_SHARED): "
            "protocol C uses a generated 320x240 clip of 100 frames instead"
        )
        frames, rate = _generated_frames(100, 240, 320), 16
        origin = "generated 320x240 (005.mp4 missing)"
    else:
        frames, rate = _read_frames(src, sizes.c_short_frames)
        origin = str(src)
    if sizes.c_crop is not None:
        ch, cw = sizes.c_crop
        fh, fw = frames[0].shape[:2]
        y0, x0 = max(0, (fh - ch) // 2), max(0, (fw - cw) // 2)
        frames = [f[y0 : y0 + ch, x0 : x0 + cw].copy() for f in frames]
        p = workdir / "clip-short.mp4"
        _write_clip(p, frames, rate)
        h, w = frames[0].shape[:2]
        clips.append(
            Clip("005-short", p, len(frames), w, h, f"{origin}, {len(frames)} frames, crop")
        )
        return clips
    h, w = frames[0].shape[:2]
    if src is not None:
        clips.append(Clip("005", src, len(frames), w, h, origin))
    else:
        p = workdir / "clip.mp4"
        _write_clip(p, frames, rate)
        clips.append(Clip("005", p, len(frames), w, h, origin))
    if long_repeat > 1:
        long_frames: list = []
        for i in range(long_repeat):
            long_frames += frames if i % 2 == 0 else frames[::-1]
        p = workdir / "clip-long.mp4"
        _write_clip(p, long_frames, rate)
        clips.append(
            Clip("005-long", p, len(long_frames), w, h, f"{origin} x{long_repeat} back and forth")
        )
    return clips


def _protocol_c(
    ctx: _Ctx, spec: ModelSpec, state: dict[str, torch.Tensor], clips: list[Clip], workdir: Path
) -> list[dict]:
    out = []
    for fp in ctx.variants:
        try:
            up, info = _make_upscaler(ctx, spec, state, fp)
        except VARIANT_ERRORS as e:
            out.append(_variant_error(ctx, _entry_base(ctx, "C", spec, fp), e, f"C {fp.name}"))
            continue
        model_only_cache: dict[tuple[int, int, int], tuple[list[float], Any]] = {}
        for clip in clips:
            entry = _protocol_c_clip(ctx, spec, fp, up, info, clip, workdir, model_only_cache)
            out.append(entry)
            ctx.emit({"type": "result", "entry": entry})
        del up
        _free(ctx.device)
    return out


def _protocol_c_clip(
    ctx: _Ctx,
    spec: ModelSpec,
    fp: Any,
    up: Any,
    info: dict[str, Any],
    clip: Clip,
    workdir: Path,
    cache: dict[tuple[int, int, int], tuple[list[float], Any]],
) -> dict[str, Any]:
    """One clip of protocol C: the command's pipeline file to file, and the model alone."""
    from .engine.tiling import plan_tiles
    from .media import EncodeOptions
    from .pipeline import UpscaleOptions, upscale

    dev = ctx.device
    s = spec.dims.scale
    base = _entry_base(ctx, "C", spec, fp)
    base.update(
        clip=clip.label,
        clip_origin=clip.origin,
        input_size=[clip.width, clip.height],
        output_size=[s * clip.width, s * clip.height],
        frames_per_run=clip.frames,
    )
    ctx.progress(f"C {spec.name} {fp.name}: {clip.label} ({clip.frames} frames)")
    try:
        options = UpscaleOptions()
        dst = workdir / f"out-{clip.label}.mp4"
        encode = EncodeOptions(overwrite=True)
        reports: list[Any] = []

        def e2e():
            reports.append(upscale(clip.path, dst, up, options, encode))
            return reports[-1]

        with torch.inference_mode():
            ctx.peak.reset()
            times, rep = time_calls(e2e, ctx.e2e_runs, 1, dev, wall=True)
            peak = ctx.peak.read()
            group = min(options.chunk, clip.frames)
            m_times, runner = _model_only(ctx, up, options, clip.height, clip.width, group, cache)
        entry = {**base, **_timing_fields(times, rep.frames_out)}
        entry["timer"] = "wall"
        model_fps = group * 1000.0 / statistics.median(m_times)
        clip_len = group if spec.dims.has_temporal else 1
        tiles = plan_tiles(clip.height, clip.width, runner.plan.tile, options.tile_overlap)
        total = sum(count_flops(spec.dims, group, t.h, t.w, clip_len)["total"] for t in tiles)
        e2e_s = statistics.median(times) / 1000.0
        net_frames = _network_frames(rep, options, spec.dims.has_temporal, clip.frames)
        entry.update(
            frames_out=rep.frames_out,
            out_width=rep.out_width,
            out_height=rep.out_height,
            plan=rep.plan,
            chunks=rep.chunks,
            network_frames=net_frames,
            seconds_network_last=round(rep.seconds_network, 4),
            media_seconds=_media_seconds(rep.media),
            peak_memory_bytes=peak,
            peak_memory_kind=ctx.peak.kind,
            gflop_per_frame=_sig(total / group / 1e9),
            **ctx.rate_fields(total / group * net_frames, e2e_s * 1000.0),
            model_only={
                "frames_per_run": group,
                "tile": runner.plan.tile,
                **_timing_fields(m_times, group),
                "timer": "cuda_events" if dev.type == "cuda" else "perf_counter",
            },
            model_only_fps=_sig(model_fps),
            e2e_vs_model=_sig(entry["fps"] / model_fps),
            fastpath=_clean_info(info),
        )
        if ctx.flicker:
            entry["flicker"] = _flicker(clip.path, dst, options, runner.plan.tile)
    except VARIANT_ERRORS as e:
        entry = _variant_error(ctx, base, e, f"C {fp.name} {clip.label}")
    return entry


def _model_only(
    ctx: _Ctx,
    up: Any,
    options: Any,
    h: int,
    w: int,
    group: int,
    cache: dict[tuple[int, int, int], tuple[list[float], Any]],
) -> tuple[list[float], Any]:
    """The model alone at a clip's size, as the pipeline calls it (measured once per size:
    clips of the same size share it). Returns the times and the back-off runner used."""
    from .engine.chunking import BackoffRunner, Plan
    from .engine.tiling import MIN_TILE

    if (h, w, group) not in cache:
        dev = ctx.device
        plan = up.initial_plan(h, w, options)
        runner = BackoffRunner(plan, Plan(tile=MIN_TILE, batch=1), frame_hw=(h, w))
        g = torch.Generator(device=dev).manual_seed(5)
        x = torch.rand(group, 3, h, w, generator=g, device=dev) * 2 - 1

        def model_only():
            return up.upscale_clip(x, runner, options.tile_overlap, options.pad_mode)

        m_times, _ = time_calls(model_only, ctx.runs, ctx.warmup, dev)
        cache[(h, w, group)] = (m_times, runner)
        del x
    return cache[(h, w, group)]


def _flicker(src: Path, dst: Path, options: Any, tile: int) -> dict[str, Any]:
    """The flicker meter on one end-to-end output (seams from the run's own plan)."""
    from .quality import measure

    r = measure(
        src,
        dst,
        chunk=options.chunk,
        chunk_overlap=options.chunk_overlap,
        tile=tile,
        tile_overlap=options.tile_overlap,
        scene_split=options.scene_split,
    )
    return {
        "ewarp": r.ewarp,
        "ewarp_bicubic": r.ewarp_bicubic,
        "chunk_seam_to_inside": r.chunk_seams.get("seam_to_inside"),
        "tile_seam_to_interior": r.tile_seams.get("seam_to_interior"),
        "flow": r.flow,
    }


def _floor_sizes(text: str) -> list[tuple[int, int, int]]:
    """``"854x480x4,1920x1080x2"`` -> [(4, 480, 854), (2, 1080, 1920)] (frames, H, W)."""
    out = []
    for item in text.split(","):
        try:
            w, h, n = (int(v) for v in item.strip().lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not WIDTHxHEIGHTxFRAMES (e.g. 854x480x4)"
            ) from None
        if min(w, h, n) < 1:
            raise argparse.ArgumentTypeError(f"{item!r}: every number must be >= 1")
        out.append((n, h, w))
    return out


def _floor_network(ctx: _Ctx, name: str) -> Any:
    from .floor import NullNetwork

    dims = tiny_dims(False)
    if name == "null":
        return NullNetwork(dims).to(ctx.device)
    return materialize(dims, _random_state(dims, 0, ctx.device), ctx.device, torch.float32)


def _floor_network_names(text: str) -> tuple[str, ...]:
    """``"null,small"`` -> ("null", "small"); an unknown name is refused."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in FLOOR_NETWORKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: floor networks are {', '.join(FLOOR_NETWORKS)} (joined by commas)"
        )
    return names


def _protocol_c_floor(ctx: _Ctx, workdir: Path) -> list[dict]:
    """The pipeline against the one-thread loop (:mod:`adcvsr_cli.floor`), file to file, for
    the null and the small network, on generated clips of ``ctx.sizes.floor``: interleaved,
    median of ``ctx.e2e_runs``."""
    from .floor import ENCODER, time_floor
    from .pipeline import Upscaler

    out = []
    for n, h, w in ctx.sizes.floor:
        src = workdir / f"floor-{w}x{h}.mp4"
        _write_clip(src, _generated_frames(n, h, w), 25)
        for name in ctx.floor_networks:
            net = _floor_network(ctx, name)
            up = Upscaler(net, device=ctx.device, dtype=ctx.dtype, on_event=ctx.emit)
            s = up.dims.scale
            base = {
                "protocol": "C",
                "model": f"floor-{name}",
                "model_kind": "image",
                "weights": "none" if name == "null" else "random",
                "variant": "pipeline",
                "device": ctx.device_name,
                "precision": ctx.precision,
                "clip": f"{w}x{h}",
                "input_size": [w, h],
                "output_size": [s * w, s * h],
                "frames_per_run": n,
                "encoder": dict(ENCODER) | ctx.floor_encoder,
                "threads": torch.get_num_threads(),
            }
            ctx.progress(f"C floor {name}: {w}x{h} -> {s * w}x{s * h}, {n} frames")
            try:
                run = time_floor(src, workdir, up, ctx.e2e_runs, encoder_options=ctx.floor_encoder)
                entry = {**base, **run.fields(), "timer": "wall", "interleaved": True}
            except AdcvsrError as e:
                entry = _variant_error(ctx, base, e, f"C floor {name} {w}x{h}")
            out.append(entry)
            ctx.emit({"type": "result", "entry": entry})
            del up, net
        _free(ctx.device)
    return out


def _network_frames(rep: Any, options: Any, temporal: bool, frames: int) -> int:
    """Frames the network ran for one file (temporal chunks overlap, so more than the file)."""
    if not temporal:
        return frames
    from .engine.chunking import plan_chunks

    chunks = plan_chunks(frames, options.chunk, options.chunk_overlap, rep.scene_cuts)
    return sum(len(c) for c in chunks)


def _media_seconds(media: dict[str, Any]) -> dict[str, float]:
    return {
        k: round(float(media.get(k, 0.0)), 4)
        for k in ("seconds_decode", "seconds_process", "seconds_encode", "seconds_total")
    }


# ----------------------------------------------------------------------------- parity


def _manifest_state(fixture_dir: Path) -> dict[str, torch.Tensor]:
    """The parity fixture's weights (the recipe of its README), in native names."""
    from .parity import manifest_native_state

    return manifest_native_state(fixture_dir / "adcsr_checkpoint_keys.json")


def parity_check(
    device: torch.device,
    fixture_dir: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    on_event: OnEvent | None = None,
) -> dict[str, Any]:
    """Relative L2 of bf16/fp16 (cast weights, and bf16 autocast) outputs against the float32
    output on the parity fixture's input, and of each against the fixture's float64 reference.

    ``weights``: a native checkpoint of the parity weights (e.g. the tests' converted file);
    without it they are rebuilt from the fixture's manifest and recipe (~20 s of CPU).
    """
    from safetensors.torch import load_file

    emit = on_event or _noop
    fdir = Path(fixture_dir) if fixture_dir else None
    if fdir is None:
        found = find_shared_file("fixtures/adcsr/parity_a.safetensors")
        fdir = found.parent if found else None
    if fdir is None or not (fdir / "parity_a.safetensors").is_file():
        return {"skipped": "parity fixture not found (fixtures/adcsr/parity_a.safetensors)"}
    t0 = time.perf_counter()
    emit({"type": "bench", "message": f"parity: weights from {weights or 'the fixture recipe'}"})
    if weights is not None:
        from .weights import load_native

        state = dict(load_native(weights).state_dict())
    else:
        state = _manifest_state(fdir)
    fx = load_file(str(fdir / "parity_a.safetensors"))
    lr, sr_raw = fx["lr"].to(device), fx["sr_raw"]
    dims = adcsr_dims()
    cases: list[tuple[str, torch.dtype, bool]] = [("bf16", torch.bfloat16, False)]
    if device.type == "cuda":
        cases += [("fp16", torch.float16, False), ("bf16-autocast", torch.bfloat16, True)]
    results: list[dict[str, Any]] = []
    m = materialize(dims, state, device, torch.float32)
    with strict_fp32(device), torch.inference_mode():
        y32 = m(lr).float().cpu()
    del m
    _free(device)
    results.append(
        {
            "precision": "fp32",
            "rel_l2_vs_fixture": rel_l2(y32, sr_raw),
            "tolerance": 1e-4,
            "pass": rel_l2(y32, sr_raw) < 1e-4,
        }
    )
    for label, dt, autocast in cases:
        emit({"type": "bench", "message": f"parity: {label}"})
        m = materialize(dims, state, device, torch.float32 if autocast else dt)
        with torch.inference_mode():
            if autocast:
                with torch.autocast(device.type, dtype=dt):
                    y = m(lr).float().cpu()
            else:
                y = m(lr.to(dt)).float().cpu()
        del m
        _free(device)
        err = rel_l2(y, y32)
        results.append(
            {
                "precision": label,
                "rel_l2_vs_fp32": err,
                "rel_l2_vs_fixture": rel_l2(y, sr_raw),
                "finite": bool(torch.isfinite(y).all()),
                "tolerance": PRECISION_TOLERANCE,
                "pass": bool(torch.isfinite(y).all()) and err < PRECISION_TOLERANCE,
            }
        )
    return {
        "fixture": str(fdir / "parity_a.safetensors"),
        "weights": str(weights) if weights else "fixture recipe",
        "input": list(lr.shape),
        "seconds": round(time.perf_counter() - t0, 2),
        "results": results,
    }


# ----------------------------------------------------------------------------- the benchmark


def default_variants(device: torch.device, compile: bool = False) -> list[str]:
    base = ["pipeline", "eager"]
    if device.type == "cuda":
        base += ["channels_last"]
    if compile:
        base += ["compile", "channels_last+compile"] if device.type == "cuda" else ["compile"]
    return base


def run_benchmark(
    protocols: Sequence[str] = ("A", "B", "C"),
    device: str = "auto",
    precision: str = "auto",
    weights: str | os.PathLike | None = None,
    runs: int = 10,
    warmup: int = 3,
    small: bool | None = None,
    compile: bool = False,
    out_json: str | os.PathLike | None = None,
    on_event: OnEvent | None = None,
    *,
    variants: Sequence[str] | str | None = None,
    dims: str | None = None,
    temporal: bool = True,
    e2e_runs: int | None = None,
    clip: str | os.PathLike | None = None,
    long_repeat: int = 4,
    shared: str | os.PathLike | None = None,
    parity: bool | None = None,
    parity_weights: str | os.PathLike | None = None,
    matmul: bool = True,
    seed: int = 0,
    threads: int | None = None,
    precision_checks: bool = True,
    flicker: bool = False,
    floor: bool = True,
    floor_sizes: Sequence[tuple[int, int, int]] | None = None,
    floor_encoder_threads: int | None = None,
    floor_networks: Sequence[str] = FLOOR_NETWORKS,
) -> dict[str, Any]:
    """Run the protocols and return the report (also written to ``out_json`` when given).

    ``small`` (default: True on the CPU) uses the small sizes; ``dims`` is ``"full"`` or
    ``"tiny"`` (default: tiny in small mode, else full) for the random-weight networks;
    ``variants``: fast-path variants (default: pipeline, eager, + channels_last on CUDA, +
    compile variants with ``compile``); ``e2e_runs``: timed runs of protocol C (default
    ``runs``); ``parity`` (default: on CUDA when the fixture is found) adds the parity-fixture
    precision check; ``threads``: torch CPU threads during the run (restored afterwards; 1 is
    much faster than oversubscribed threads on a busy machine); ``flicker``: protocol C entries
    get the flicker meter's E*warp of their output (``adcvsr quality``; needs OpenCV);
    ``floor_encoder_threads``: the encoder threads of both sides of protocol C's floor runs
    (default: the encoder's own choice); ``floor_networks``: which of :data:`FLOOR_NETWORKS`
    they run. Raises :class:`UsageError` for bad arguments.
    """
    params = {k: v for k, v in locals().items() if k != "threads"}
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be >= 1, got {threads}")
    unknown = [n for n in floor_networks if n not in FLOOR_NETWORKS]
    if unknown:
        raise UsageError(f"floor networks are {', '.join(FLOOR_NETWORKS)}, got {unknown}")
    if floor_encoder_threads is not None and floor_encoder_threads < 1:
        raise UsageError(f"floor encoder threads must be >= 1, got {floor_encoder_threads}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_benchmark(**params)
    finally:
        torch.set_num_threads(old_threads)


def _run_benchmark(
    *,
    protocols: Sequence[str],
    device: str,
    precision: str,
    weights: str | os.PathLike | None,
    runs: int,
    warmup: int,
    small: bool | None,
    compile: bool,
    out_json: str | os.PathLike | None,
    on_event: OnEvent | None,
    variants: Sequence[str] | str | None,
    dims: str | None,
    temporal: bool,
    e2e_runs: int | None,
    clip: str | os.PathLike | None,
    long_repeat: int,
    shared: str | os.PathLike | None,
    parity: bool | None,
    parity_weights: str | os.PathLike | None,
    matmul: bool,
    seed: int,
    precision_checks: bool,
    flicker: bool,
    floor: bool,
    floor_sizes: Sequence[tuple[int, int, int]] | None,
    floor_encoder_threads: int | None,
    floor_networks: Sequence[str],
) -> dict[str, Any]:
    from .pipeline import resolve_device, resolve_precision

    t_start = time.perf_counter()
    emit = on_event or _noop
    protos = _protocol_list(protocols, runs, warmup, e2e_runs, long_repeat)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    small = dev.type == "cpu" if small is None else bool(small)
    dims_mode = dims or ("tiny" if small else "full")
    if dims_mode not in ("tiny", "full"):
        raise UsageError(f"dims must be tiny or full, got {dims_mode!r}")
    fps = _variants(variants, dev, compile)
    sizes = SMALL_SIZES if small else FULL_SIZES
    if floor_sizes:
        sizes = replace(sizes, floor=tuple((int(n), int(h), int(w)) for n, h, w in floor_sizes))
    notes = _run_notes(dims_mode, weights, dev)
    specs = _model_specs(weights, dims_mode, temporal, seed)

    emit({"type": "bench", "message": f"matmul rate on {dev}"})
    mm = matmul_rate(dev, sizes.matmul_n) if matmul else None
    ctx = _Ctx(
        device=dev,
        dtype=dtype,
        sizes=sizes,
        small=small,
        runs=runs,
        warmup=warmup,
        e2e_runs=e2e_runs or runs,
        variants=fps,
        emit=emit,
        device_name=device_name(dev),
        matmul_tflops=mm["tflops"] if mm else 0.0,
        peak=PeakMemory(dev),
        notes=notes,
        precision_checks=precision_checks,
        flicker=flicker,
        floor=floor,
        floor_encoder={"threads": str(floor_encoder_threads)} if floor_encoder_threads else {},
        floor_networks=tuple(floor_networks),
    )
    report = _report_head(ctx, specs, "from weights" if weights is not None else dims_mode, mm)

    def save_partial() -> None:
        if out_json is not None:
            report["seconds"] = round(time.perf_counter() - t_start, 2)
            write_report(report, out_json)

    report["parity"] = _parity(parity, dev, shared, parity_weights, emit)
    save_partial()
    with tempfile.TemporaryDirectory(prefix="adcvsr-bench-") as tmp:
        clips = (clip, long_repeat, shared)
        _run_protocols(report, ctx, specs, protos, Path(tmp), clips, save_partial)
    report["partial"] = False
    report["seconds"] = round(time.perf_counter() - t_start, 2)
    if out_json is not None:
        write_report(report, out_json)
    return report


def _parity(
    parity: bool | None,
    dev: torch.device,
    shared: str | os.PathLike | None,
    weights: str | os.PathLike | None,
    emit: OnEvent,
) -> dict[str, Any]:
    """The parity-fixture check (default: on CUDA), or why it was skipped."""
    if not (parity if parity is not None else dev.type == "cuda"):
        return {"skipped": "not asked"}
    fixture = None if shared is None else Path(shared) / "fixtures/adcsr"
    return parity_check(dev, fixture, weights, emit)


def _protocol_list(
    protocols: Sequence[str] | str, runs: int, warmup: int, e2e_runs: int | None, long_repeat: int
) -> list[str]:
    """The protocols asked for, upper-cased, after checking the counts."""
    protos = [
        p.strip().upper()
        for p in (protocols.split(",") if isinstance(protocols, str) else protocols)
    ]
    bad = [p for p in protos if p not in PROTOCOLS]
    if bad or not protos:
        raise UsageError(f"protocols {bad or protos} are not among {', '.join(PROTOCOLS)}")
    if runs < 1 or warmup < 0 or (e2e_runs is not None and e2e_runs < 1):
        raise UsageError("runs and e2e runs must be >= 1, warm-up >= 0")
    if long_repeat < 1:
        raise UsageError(f"long_repeat must be >= 1, got {long_repeat}")
    return protos


def _variants(variants: Sequence[str] | str | None, dev: torch.device, compile: bool) -> Any:
    """The variants to time: the device's defaults, or those asked (plus "compile" with
    ``compile``)."""
    if variants is None:
        variants = default_variants(dev, compile)
    elif compile:
        variants = list(variants.split(",") if isinstance(variants, str) else variants)
        variants += ["compile"]
    return parse_variants(variants)


def _run_notes(dims_mode: str, weights: str | os.PathLike | None, dev: torch.device) -> list[str]:
    notes: list[str] = []
    if dims_mode == "tiny" and weights is None:
        notes.append(
            "tiny dims (random weights): times are a smoke test of the machinery, not of the "
            "real network; the FLOP reference is still computed for the full AdcSR dims"
        )
    if dev.type == "cpu":
        notes.append(
            "CPU: precision checks compare fp32 with fp64 and bf16 with fp32; peak memory is "
            "the process's peak resident set"
        )
    return notes


def _report_head(
    ctx: _Ctx, specs: Sequence[ModelSpec], dims: str, mm: dict[str, Any] | None
) -> dict[str, Any]:
    """The report's fields known before anything is timed (protocols filled in later)."""
    dev = ctx.device
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "device": {"type": dev.type, "name": ctx.device_name, "str": str(dev)},
        "precision": ctx.precision,
        "small": ctx.small,
        "dims": dims,
        "runs": ctx.runs,
        "warmup": ctx.warmup,
        "e2e_runs": ctx.e2e_runs,
        "variants": [f.name for f in ctx.variants],
        "models": [
            {
                "name": s.name,
                "kind": s.kind,
                "weights": s.weights or "random",
                "dims": json.loads(s.dims.to_json()),
            }
            for s in specs
        ],
        "matmul": mm,
        "flops_reference": flops_reference(),
        "protocols": {},
        "notes": ctx.notes,
        "partial": True,
    }


def _run_protocols(
    report: dict[str, Any],
    ctx: _Ctx,
    specs: Sequence[ModelSpec],
    protos: Sequence[str],
    work: Path,
    clip_args: tuple[Any, int, Any],
    save_partial: Callable[[], None],
) -> None:
    """Run the asked protocols in order A, L, B, C, saving the report after each step."""
    states: dict[str, dict[str, torch.Tensor]] = {}

    def state_of(spec: ModelSpec) -> dict[str, torch.Tensor]:
        if spec.name not in states:
            ctx.emit({"type": "bench", "message": f"weights: {spec.describe()}"})
            states[spec.name] = _load_state(spec, ctx.device)
        return states[spec.name]

    if "A" in protos:
        report["protocols"]["A"] = []
        for spec in specs:
            report["protocols"]["A"] += _protocol_a(ctx, spec, state_of(spec))
            if spec is not specs[0]:
                states.pop(spec.name, None)
            save_partial()
    if "L" in protos:
        report["protocols"]["L"] = []
        for spec in specs:
            report["protocols"]["L"] += _protocol_l(ctx, spec, state_of(spec))
            save_partial()
    if "B" in protos:
        report["protocols"]["B"] = _protocol_b(ctx, specs[0], state_of(specs[0]))
        save_partial()
    if "C" in protos:
        try:
            import av  # noqa: F401  (the media layer needs PyAV)
        except ImportError:
            ctx.notes.append("PyAV (av) is not installed here: protocol C skipped")
            report["protocols"]["C"] = []
        else:
            clip, long_repeat, shared = clip_args
            clips = prepare_clips(ctx.sizes, work, clip, long_repeat, shared, ctx.notes)
            report["clips"] = [
                {
                    "label": c.label,
                    "origin": c.origin,
                    "frames": c.frames,
                    "size": [c.width, c.height],
                }
                for c in clips
            ]
            report["protocols"]["C"] = _protocol_c(ctx, specs[0], state_of(specs[0]), clips, work)
            if ctx.floor:
                report["protocols"]["C"] += _protocol_c_floor(ctx, work)
                save_partial()
    states.clear()


def write_report(report: dict[str, Any], path: str | os.PathLike) -> None:
    from .weights import atomic_write

    text = json.dumps(report, indent=2, sort_keys=False, allow_nan=True) + "\n"

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(Path(path), write)


# ----------------------------------------------------------------------------- printing


def _fmt_mem(b: int | None) -> str:
    if not b:
        return "-"
    return f"{b / 2**30:.2f}G" if b >= 2**30 else f"{b / 2**20:.0f}M"


WIDTH = 80  # every printed line fits a terminal of 80 columns
_NUM_HEAD = f"{'frames':>7}{'median ms':>11}{'min ms':>10}{'fps':>9}"


def _wrap(text: str, indent: int = 4) -> list[str]:
    pad = " " * indent
    return textwrap.wrap(text, WIDTH, initial_indent=pad, subsequent_indent=pad + "  ") or [pad]


def _io(e: dict[str, Any]) -> str:
    (w, h), (ow, oh) = e["input_size"], e["output_size"]
    return f"{w}x{h} -> {ow}x{oh}"


def _label(e: dict[str, Any]) -> str:
    return e["model"] + (f"/{e['clip']}" if "clip" in e else "")


def _numbers(e: dict[str, Any]) -> str:
    if "pipeline_vs_loop" in e:
        return f"{e['frames']:>7}"
    return f"{e['frames_per_run']:>7}{e['ms_median']:>11.1f}{e['ms_min']:>10.1f}{e['fps']:>9.2f}"


def _rate(e: dict[str, Any]) -> str:
    frac = e.get("matmul_fraction")
    text = (
        f"{e.get('gflop_per_frame', 0):.1f} GFLOP/frame, {e.get('tflops_achieved', 0):.3f} TFLOP/s"
    )
    return text + (f" ({100 * frac:.1f}% of the matmul rate)" if frac is not None else "")


def _details(proto: str, e: dict[str, Any]) -> list[str]:
    """What does not fit the row, as short sentences (wrapped at :data:`WIDTH`)."""
    if "error" in e:
        return [f"failed: {e['error'][:300]}"]
    if "pipeline_vs_loop" in e:
        return [
            f"{_io(e)}: pipeline {e['pipeline_s_median']:.2f} s, one-thread loop "
            f"{e['loop_s_median']:.2f} s (median of {len(e['loop_s_all'])}): "
            f"{e['pipeline_vs_loop']:.3f}x the loop's rate",
            f"alone: network {e['network_s_median']:.2f} s, post {e['post_s_median']:.2f} s, "
            f"encoder {e['encoder_s_median']:.2f} s; "
            f"overlap can reach {e['overlap_ceiling']:.3f}x the loop (bound: the "
            f"{e['bound_stage']}); the pipeline runs at {100 * e['pipeline_vs_bound']:.1f}% of it",
        ]
    rel, peak = e.get("rel_l2_vs_fp32"), _fmt_mem(e.get("peak_memory_bytes"))
    if proto == "L":
        return [f"{_io(e)}, layout {e['layout']}, relative L2 vs contiguous {rel:.1e}"]
    out = [f"{_io(e)}, peak memory {peak}, {_rate(e)}"]
    if rel is not None:
        out[0] += f", relative L2 vs fp32 {rel:.1e}"
    if proto == "B":
        out.append(
            f"tile {e['tile'] or 'off'} ({e['tiling']}), {e['tiles']} tile(s)"
            + (
                f"; plan changes: {'; '.join(map(str, e['plan_changes']))}"
                if e["plan_changes"]
                else ""
            )
        )
    if proto == "C":
        mo = e["model_only"]
        out.append(
            f"end to end {e['fps']:.2f} fps = {100 * e['e2e_vs_model']:.1f}% of the network "
            f"alone ({e['model_only_fps']:.2f} fps on {mo['frames_per_run']} frames, tile "
            f"{mo['tile'] or 'off'}); {e['network_frames']} network frames for "
            f"{e['frames_out']} written"
        )
        fl = e.get("flicker")
        if fl:
            out.append(f"flicker E*warp {fl['ewarp']} x10^-3 (bicubic {fl['ewarp_bicubic']})")
    fallback = (e.get("fastpath") or {}).get("compile_fallback")
    if fallback:
        out.append(f"compile fell back to eager: {fallback[:200]}")
    return out


def _protocol_table(proto: str, entries: list[dict[str, Any]]) -> list[str]:
    """One protocol: a row per entry (names, frames, median and min ms, fps), then its details.
    Names that would push the row past :data:`WIDTH` get a line of their own."""
    w1 = max([len("model")] + [len(_label(e)) for e in entries]) + 2
    w2 = max([len("variant")] + [len(e.get("variant", "")) for e in entries]) + 2
    inline = 2 + w1 + w2 + len(_NUM_HEAD) <= WIDTH
    lines = ["", f"Protocol {proto}"]
    if inline:
        lines.append(f"  {'model':<{w1}}{'variant':<{w2}}{_NUM_HEAD}")
    else:
        lines.append(f"  model, variant / {_NUM_HEAD.strip()}")
    for e in entries:
        variant = "pipeline vs loop" if "pipeline_vs_loop" in e else e.get("variant", "")
        nums = "" if "error" in e else _numbers(e)
        if inline:
            lines.append(f"  {_label(e):<{w1}}{variant:<{w2}}{nums}".rstrip())
        else:
            lines.append(f"  {_label(e)}, {variant}")
            if nums:
                lines.append(f"  {'':<{WIDTH - 2 - len(_NUM_HEAD)}}{nums}")
        for d in _details(proto, e):
            lines += _wrap(d)
    return lines + _protocol_summary(proto, entries)


def _protocol_summary(proto: str, entries: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    if proto == "L":
        for e in entries:
            if e.get("fastest") or e.get("default"):
                tags = " and ".join(t for t in ("fastest", "default") if e.get(t))
                lines += _wrap(
                    f"{e['model']}: {tags} on this device: layout {e['layout']} (min "
                    f"{e['ms_min']:.1f} ms, interleaved rounds)",
                    2,
                )
    if proto == "A":
        seen = set()
        for e in entries:
            if e.get("precision_checks") and e["model"] not in seen:
                seen.add(e["model"])
                checks = ", ".join(
                    f"{c['precision']} vs {c['reference']} {c['rel_l2']:.2e}"
                    for c in e["precision_checks"]
                )
                lines += _wrap(f"precision {e['model']}: {checks}", 2)
    return lines


def _parity_line(par: dict[str, Any]) -> str:
    if "results" not in par:
        return f"parity fixture: skipped ({par.get('skipped', '')})"
    parts = []
    for r in par["results"]:
        ref = "fp32" if "rel_l2_vs_fp32" in r else "fixture"
        err = r["rel_l2_vs_fp32"] if "rel_l2_vs_fp32" in r else r["rel_l2_vs_fixture"]
        parts.append(f"{r['precision']} vs {ref} {err:.2e} {'ok' if r.get('pass') else 'FAIL'}")
    return "parity fixture: " + ", ".join(parts)


def _target_lines(tg: dict[str, Any]) -> list[str]:
    """The project's targets, when ``benchmarks/bench.py`` added them."""
    if not tg:
        return []
    if not tg.get("applicable"):
        return ["targets: not applicable (they are for full sizes on an H100/H200)"]
    lines = []
    for k, v in tg.items():
        if isinstance(v, dict):
            facts = ", ".join(f"{name} {val}" for name, val in v.items() if name != "pass")
            lines += _wrap(f"target {k}: {'PASS' if v['pass'] else 'MISS'} ({facts})", 0)
    return lines


def format_report(report: dict[str, Any]) -> str:
    """The report as plain text, every line at most :data:`WIDTH` columns (what :func:`main`
    and ``adcvsr bench`` print)."""
    lines = _wrap(
        f"adcvsr bench - {report['device']['name']} - {report['precision']} - "
        f"{'small' if report['small'] else 'full'} sizes, {report['dims']} dims - "
        f"torch {report['torch']}",
        0,
    )
    mm = report.get("matmul")
    if mm:
        lines.append(f"matmul {mm['dtype']} {mm['n']}^3: {mm['tflops']:.3f} TFLOP/s (median)")
    fr = report["flops_reference"]
    lines += _wrap(
        f"FLOPs per 512x512 output frame, AdcSR dims: {fr['gflop_per_frame_conv_linear']:.1f} "
        f"GFLOP conv+linear, {fr['gflop_per_frame']:.1f} with the attention products",
        0,
    )
    for proto, entries in report["protocols"].items():
        lines += _protocol_table(proto, entries)
    lines += ["", *_wrap(_parity_line(report.get("parity") or {}), 0)]
    lines += _target_lines(report.get("targets") or {})
    for n in report.get("notes", []):
        lines += _wrap(f"note: {n}", 0)
    lines.append(f"total {report['seconds']:.1f} s")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m adcvsr_cli.bench",
        description="Benchmark the AdcVSR network and pipeline (protocols A, B, C, L).",
    )
    p.add_argument(
        "--protocols", default="A,B,C", help="comma-separated subset of A,B,C,L (L: layouts)"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    p.add_argument("--weights", default=None, help="native checkpoint (default: random weights)")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--e2e-runs", type=int, default=None, help="timed runs of C (default --runs)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--small", dest="small", action="store_true", default=None)
    size.add_argument("--full", dest="small", action="store_false")
    p.add_argument("--dims", choices=("tiny", "full"), default=None)
    p.add_argument("--variants", default=None, help="e.g. pipeline,eager,channels_last,compile")
    p.add_argument("--compile", action="store_true", help="add the torch.compile variants")
    p.add_argument("--no-temporal", dest="temporal", action="store_false")
    p.add_argument("--clip", default=None, help="input of protocol C (default: 005.mp4)")
    p.add_argument("--long-repeat", type=int, default=4)
    p.add_argument("--shared", default=None, help="the shared folder (media/, fixtures/)")
    par = p.add_mutually_exclusive_group()
    par.add_argument("--parity", dest="parity", action="store_true", default=None)
    par.add_argument("--no-parity", dest="parity", action="store_false")
    p.add_argument("--parity-weights", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--no-precision-checks",
        dest="precision_checks",
        action="store_false",
        help="skip the bf16/fp16-vs-fp32 checks of protocol A (the variants' own error stays)",
    )
    p.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="protocol C without the null/small-network runs against the one-thread loop",
    )
    p.add_argument(
        "--floor-sizes",
        type=_floor_sizes,
        default=None,
        help="clips of the floor runs, WxHxFRAMES joined by commas (e.g. 854x480x4,1920x1080x2)",
    )
    p.add_argument(
        "--floor-networks",
        type=_floor_network_names,
        default=FLOOR_NETWORKS,
        help="networks of the floor runs: null (nearest x4), small (tiny random), joined by commas",
    )
    p.add_argument(
        "--floor-encoder-threads",
        type=int,
        default=None,
        help="encoder threads of both sides of the floor runs (default: the encoder's own choice)",
    )
    p.add_argument("--json", dest="out_json", default=None, help="write the report here")
    p.add_argument(
        "--plot", default=None, help="draw the table as a PNG chart (needs 'adcvsr[plot]')"
    )
    p.add_argument(
        "--flicker",
        action="store_true",
        help="protocol C: measure each output's flicker, E*warp (needs 'adcvsr[quality]')",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def main(
    argv: Sequence[str] | None = None,
    on_report: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """The command line. ``on_report`` may add to the finished report before it is printed and
    written again (``benchmarks/bench.py`` adds the project's targets)."""
    keep_freed_memory()  # as ``adcvsr`` does before any thread starts (see engine/cpumem.py)
    args = _parser().parse_args(argv)
    try:  # a missing extra is named before minutes of benchmarking, not after
        if args.plot:
            from .plots import load_pyplot

            load_pyplot()
        if args.flicker:
            from .quality import load_cv2

            load_cv2()
    except AdcvsrError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code

    def on_event(e: Event) -> None:
        if args.quiet and e.get("type") != "warning":
            return
        if e.get("type") in ("bench", "warning"):
            print(f"[bench] {e.get('message')}", file=sys.stderr, flush=True)

    try:
        report = run_benchmark(
            protocols=args.protocols.split(","),
            device=args.device,
            precision=args.precision,
            weights=args.weights,
            runs=args.runs,
            warmup=args.warmup,
            small=args.small,
            compile=args.compile,
            out_json=args.out_json,
            on_event=on_event,
            variants=args.variants,
            dims=args.dims,
            temporal=args.temporal,
            e2e_runs=args.e2e_runs,
            clip=args.clip,
            long_repeat=args.long_repeat,
            shared=args.shared,
            parity=args.parity,
            parity_weights=args.parity_weights,
            threads=args.threads,
            precision_checks=args.precision_checks,
            flicker=args.flicker,
            floor=args.floor,
            floor_sizes=args.floor_sizes,
            floor_encoder_threads=args.floor_encoder_threads,
            floor_networks=args.floor_networks,
        )
        if args.plot:
            from .plots import plot_bench

            plot_bench(report, args.plot, overwrite=True)
    except AdcvsrError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if on_report is not None:
        on_report(report)
        if args.out_json:
            write_report(report, args.out_json)
    print(format_report(report))
    if args.out_json:
        print(f"report written to {args.out_json}")
    if args.plot:
        print(f"chart written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
