"""The upscaling pipeline: frames in, network over chunks and tiles, frames out.

:func:`load_model` resolves ``--weights`` and puts the network on a device once;
:func:`upscale` runs one file (video or image) through it with the media layer of
:mod:`adcvsr_cli.video`. Decoding, inference and encoding overlap (the media layer decodes and
encodes in worker threads); this module is the frame processor in the middle:

  uint8/uint16 RGB (H, W, 3) --to device, [-1, 1]--> scene detector --> StreamingChunker
  --> network over tiles (OOM back-off) --> colour fix --> resize to the asked size
  --> rounded uint8/uint16 (out_h, out_w, 3)

Nothing here prints: progress and notices go to ``on_event`` callbacks as dicts.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .chunking import (
    DEFAULT_CHUNK,
    DEFAULT_OVERLAP,
    BackoffRunner,
    Plan,
    StreamingChunker,
    check_chunk_args,
    run_chunk_plan,
)
from .colorfix import COLOR_FIX_MODES, DEFAULT_COLOR_FIX, make_color_fix
from .errors import UsageError
from .model import AdcVSR
from .tiling import MIN_TILE, auto_tile, check_tile_args
from .weights import load_native

Event = dict[str, Any]
OnEvent = Callable[[Event], None]

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DEFAULT_TILE_OVERLAP = 32
# Frames decoded together by the VAE decoder up blocks (they have no temporal blocks, so a chunk
# can be decoded piecewise): bounds memory on the CPU and on small cards.
CPU_DECODE_BATCH = 2


def _noop(_: Event) -> None:
    pass


# ----------------------------------------------------------------------------- device and precision


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU. Raises UsageError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise UsageError(
            f"--device {device!r} is not a device (use auto, cpu, cuda or cuda:N)"
        ) from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                "no CUDA device is available here (use --device cpu, which is very slow)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif dev.type != "cpu":
        raise UsageError(f"--device {device!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto`` -> fp16 on CUDA, fp32 on the CPU.

    Not bf16: on the parity fixture bf16 lands 3.3e-2 (relative L2) from fp32, fp16 within the
    1e-2 the project requires (bf16's 8-bit mantissa, not its range, is the limit here). fp16's
    narrow range is guarded instead: a call whose output is not finite is rerun in bf16.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return _DTYPES[precision]
    if device.type == "cuda":
        return torch.float16
    return torch.float32


def free_memory(device: torch.device) -> int:
    """Bytes the network may use now on ``device`` (CPU: half of the available RAM)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        reserved = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + reserved)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return 4 << 30


# ----------------------------------------------------------------------------- options


@dataclass
class UpscaleOptions:
    """How frames go through the network and what size they come out at."""

    scale: float = 4.0
    width: int | None = None
    height: int | None = None
    tile: int | str = "auto"  # LR pixels, multiple of 16; 0 = whole frames; "auto" = fit memory
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    chunk: int = DEFAULT_CHUNK
    chunk_overlap: int = DEFAULT_OVERLAP
    batch: int | None = None  # frames per forward for image models (None: chunk)
    color_fix: str = DEFAULT_COLOR_FIX
    scene_split: bool = True
    pad_mode: str = "replicate"

    def validate(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise UsageError(f"--scale must be a positive number, got {self.scale}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise UsageError(f"--{name} must be positive, got {v}")
        if isinstance(self.tile, str) and self.tile != "auto":
            try:
                self.tile = int(self.tile)
            except ValueError:
                raise UsageError(
                    f"--tile must be a number of pixels, 0 or auto, got {self.tile!r}"
                ) from None
        try:
            if not isinstance(self.tile, str):
                check_tile_args(self.tile, self.tile_overlap)
            check_chunk_args(self.chunk, self.chunk_overlap)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"--batch must be >= 1, got {self.batch}")
        if self.color_fix not in COLOR_FIX_MODES:
            raise UsageError(
                f"--color-fix {self.color_fix!r} is not one of {', '.join(COLOR_FIX_MODES)}"
            )

    def output_size(self, width: int, height: int, even: bool = False) -> tuple[int, int]:
        """(out_w, out_h) for an input of width x height. ``even``: round to even sides."""
        if self.width and self.height:
            w, h = self.width, self.height
        elif self.width:
            w, h = self.width, round(height * self.width / width)
        elif self.height:
            w, h = round(width * self.height / height), self.height
        else:
            w, h = round(width * self.scale), round(height * self.scale)
        if even:
            w, h = w + (w % 2), h + (h % 2)
        return max(1, w), max(1, h)


# ----------------------------------------------------------------------------- the upscaler


@dataclass
class ChunkStats:
    frames: int = 0
    chunks: int = 0
    seconds_network: float = 0.0
    plan: str = ""
    changes: list[str] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)


class Upscaler:
    """A loaded network on a device, reusable for any number of files."""

    def __init__(
        self,
        model: AdcVSR,
        *,
        device: torch.device,
        dtype: torch.dtype,
        source: str = "",
        compile: bool = False,
        fastpath: str | None = None,
        on_event: OnEvent | None = None,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.device = device
        self.dtype = dtype
        self.source = source
        self.dims = model.dims
        self.temporal = model.dims.has_temporal
        self.emit = on_event or _noop
        self._forward: Callable[[torch.Tensor, int], torch.Tensor] = self._network
        self.fastpath: Any = None
        spec = "+".join(p for p in (fastpath, "compile" if compile else None) if p)
        if spec and spec != "eager":
            from .fastpath import FastForward, FastPath, prepare_model

            fp = FastPath.parse(spec)
            self.model = prepare_model(self.model, dtype, fp, copy_model=False)
            self.fastpath = FastForward(
                self.model, device=device, dtype=dtype, fastpath=fp, on_event=self.emit
            )
            self._forward = self.fastpath

    @property
    def compiled(self) -> bool:
        return bool(self.fastpath is not None and self.fastpath.info.get("compiled"))

    def _guarded(self, x: torch.Tensor, clip_len: int) -> torch.Tensor:
        """The network call, with fp16's range guarded: a non-finite output reruns in bf16."""
        y = self._forward(x, clip_len)
        if self.dtype == torch.float16 and not bool(torch.isfinite(y).all()):
            self.emit(
                {
                    "type": "warning",
                    "message": "fp16 overflowed on this input: switching the network to bf16 for the rest of the run",
                }
            )
            self.model.to(torch.bfloat16)
            self.dtype = torch.bfloat16
            self._forward = self._network  # a compiled or captured fp16 graph no longer applies
            y = self._forward(x, clip_len)
        return y

    # The decoder up blocks have no temporal blocks: run them in frame groups to bound memory.
    def _network(self, x: torch.Tensor, clip_len: int) -> torch.Tensor:
        """(B*T, 3, h, w) in [-1, 1], h and w multiples of 16 -> (B*T, 3, 4h, 4w) float32."""
        x = x.to(self.dtype)
        lat = self.model.latent(x, clip_len)
        group = self.decode_batch(x.shape[0])
        outs = [
            self.model.decoder.decode_up(lat[i : i + group]).float()
            for i in range(0, lat.shape[0], group)
        ]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def decode_batch(self, n: int) -> int:
        return min(n, CPU_DECODE_BATCH) if self.device.type == "cpu" else n

    def dtype_name(self) -> str:
        return {v: k for k, v in _DTYPES.items()}[self.dtype]

    # -- plans --------------------------------------------------------------------------------
    def initial_plan(self, h: int, w: int, options: UpscaleOptions) -> Plan:
        # On the CPU a big batch only costs memory: the cores are busy with one frame already.
        batch = options.batch or (options.chunk if self.device.type == "cuda" else CPU_DECODE_BATCH)
        group = options.chunk if self.temporal else batch
        if options.tile == "auto":
            frames = self.decode_batch(group)
            tile = auto_tile(
                free_memory(self.device),
                torch.finfo(self.dtype).bits // 8,
                frames,
                h,
                w,
                overlap=options.tile_overlap,
            )
        else:
            tile = int(options.tile)
        return Plan(tile=tile, batch=batch)

    def upscale_clip(
        self,
        x: torch.Tensor,
        runner: BackoffRunner,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        pad_mode: str = "replicate",
    ) -> torch.Tensor:
        """(T, 3, H, W) in [-1, 1] (one clip, or independent frames for an image model) ->
        (T, 3, 4H, 4W) float32, through tiles and the out-of-memory back-off."""
        with torch.inference_mode():
            return runner(
                lambda plan: run_chunk_plan(
                    self._guarded,
                    x,
                    plan,
                    self.temporal,
                    tile_overlap,
                    self.dims.scale,
                    self.dims.multiple,
                    pad_mode,
                )
            )

    # -- the frame processor ------------------------------------------------------------------
    def processor(
        self,
        options: UpscaleOptions,
        out_size: Callable[[int, int], tuple[int, int]],
        on_event: OnEvent = _noop,
        stats: ChunkStats | None = None,
        cancel: threading.Event | None = None,
    ) -> Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]:
        """A :data:`~adcvsr_cli.video.FrameProcessor` for this network and these options."""
        stats = stats if stats is not None else ChunkStats()

        def process(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            from .scenes import SceneDetector

            detector = SceneDetector() if options.scene_split else None
            fix = make_color_fix(options.color_fix)
            runner: BackoffRunner | None = None
            chunker: StreamingChunker | None = None
            size: tuple[int, int] | None = None
            deep = False

            def run_chunk(x: torch.Tensor) -> torch.Tensor:
                if cancel is not None and cancel.is_set():
                    raise KeyboardInterrupt
                assert runner is not None
                t0 = time.perf_counter()
                y = self.upscale_clip(x, runner, options.tile_overlap, options.pad_mode)
                stats.seconds_network += time.perf_counter() - t0
                stats.chunks += 1
                stats.plan = runner.plan.describe()
                return y

            def finish(sr: torch.Tensor, tag: tuple[torch.Tensor, bool]) -> np.ndarray:
                lr, cut = tag
                with torch.inference_mode():
                    y = fix(sr[None], lr[None], [cut])
                    assert size is not None
                    ow, oh = size
                    if y.shape[-2:] != (oh, ow):
                        y = F.interpolate(
                            y, size=(oh, ow), mode="bicubic", antialias=True, align_corners=False
                        )
                    stats.frames += 1
                    return to_array(y[0], deep)

            for arr in frames:
                if chunker is None:
                    h, w = arr.shape[:2]
                    deep = arr.dtype == np.uint16
                    size = out_size(w, h)
                    plan = self.initial_plan(h, w, options)
                    # A temporal model takes its whole chunk at once: a smaller batch buys nothing.
                    floor = Plan(tile=MIN_TILE, batch=plan.batch if self.temporal else 1)
                    runner = BackoffRunner(
                        plan,
                        floor,
                        frame_hw=(h, w),
                        on_change=lambda line: on_event({"type": "warning", "message": line}),
                    )
                    # Image models: frames are independent, so feed the network batch by batch.
                    group = options.chunk if self.temporal else plan.batch
                    chunker = StreamingChunker(
                        run_chunk,
                        chunk=group,
                        overlap=options.chunk_overlap if self.temporal else 0,
                        full_last=self.temporal,
                        out_dtype=torch.float32,
                    )
                    on_event(
                        {
                            "type": "plan",
                            "device": str(self.device),
                            "precision": self.dtype_name(),
                            "tile": plan.tile,
                            "batch": plan.batch,
                            "chunk": group,
                            "chunk_overlap": chunker.overlap,
                            "temporal": self.temporal,
                        }
                    )
                lr = to_tensor(arr, self.device)
                cut = bool(detector.feed(lr)) if detector is not None else False
                if cut:
                    stats.cuts.append(chunker.frames_pushed)
                for fin in chunker.push(lr, tag=(lr, cut), cut=cut and self.temporal):
                    yield finish(fin.frame, fin.tag)
            if chunker is not None:
                for fin in chunker.finish():
                    yield finish(fin.frame, fin.tag)
            if runner is not None:
                stats.changes = list(runner.changes)

        return process


def to_tensor(arr: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 or uint16 -> (3, H, W) float32 in [-1, 1] on ``device`` (converted there)."""
    if arr.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(arr))
        scale = 255.0
    elif arr.dtype == np.uint16:
        # torch's uint16 support is thin: carry the bits as int16 and unwrap on the device.
        t = torch.from_numpy(np.ascontiguousarray(arr).view(np.int16))
        scale = 65535.0
    else:
        raise TypeError(f"frames must be uint8 or uint16, got {arr.dtype}")
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    t = t.to(device)
    if arr.dtype == np.uint16:
        t = t.to(torch.int32) & 0xFFFF
    return t.permute(2, 0, 1).float().mul_(2.0 / scale).sub_(1.0)


def to_array(sr: torch.Tensor, deep: bool) -> np.ndarray:
    """(3, H, W) roughly in [-1, 1] -> rounded (H, W, 3) uint8 (or uint16 when ``deep``)."""
    maxval = 65535.0 if deep else 255.0
    q = ((sr.float() + 1.0) * (maxval / 2.0)).clamp_(0.0, maxval).round_()
    a = q.permute(1, 2, 0).to(torch.int32 if deep else torch.uint8).cpu().numpy()
    return a.astype(np.uint16) if deep else np.ascontiguousarray(a)


# ----------------------------------------------------------------------------- public API


def load_model(
    weights: str | os.PathLike | None = None,
    *,
    device: str = "auto",
    precision: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
    compile: bool = False,
    fastpath: str | None = None,
    on_event: OnEvent | None = None,
) -> Upscaler:
    """Resolve ``weights`` (registry name, native path or ``hf://``), load it once on a device.

    ``fastpath``: options of :class:`~adcvsr_cli.fastpath.FastPath` joined by ``+`` (e.g.
    ``"channels_last+compile"``); ``compile=True`` adds ``compile``. Each falls back to eager
    where it cannot run.
    """
    from .weights import resolve_weights

    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    resolved = resolve_weights(weights, cache_dir=cache_dir, offline=offline, on_event=on_event)
    model = load_native(resolved.path, device=dev, dtype=dtype)
    return Upscaler(
        model,
        device=dev,
        dtype=dtype,
        source=resolved.source,
        compile=compile,
        fastpath=fastpath,
        on_event=on_event,
    )


@dataclass
class UpscaleReport:
    input: str
    output: str
    frames_in: int
    frames_out: int
    seconds: float
    seconds_network: float
    plan: str
    device: str
    precision: str
    weights: str
    out_width: int
    out_height: int
    chunks: int
    scene_cuts: list[int]
    plan_changes: list[str]
    media: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def upscale(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    upscaler: Upscaler,
    options: UpscaleOptions | None = None,
    encode: Any = None,
    *,
    on_event: OnEvent | None = None,
    cancel: threading.Event | None = None,
) -> UpscaleReport:
    """Upscale one video or image ``src`` into ``dst`` (``"-"``: standard input/output).

    ``encode`` is a :class:`~adcvsr_cli.video.EncodeOptions`. Raises the typed errors of
    :mod:`adcvsr_cli.errors`; on any failure ``dst`` is left as it was.
    """
    from .video import EncodeOptions, is_image_path, transcode

    options = options or UpscaleOptions()
    options.validate()
    encode = encode or EncodeOptions()
    emit = on_event or _noop
    stats = ChunkStats()
    t0 = time.perf_counter()
    image_out = str(dst) != "-" and is_image_path(dst)

    # The media layer asks for the size once it has probed the input (video encoders want even
    # sides; images do not); the processor then resizes every frame to that same size.
    sizes: list[tuple[int, int]] = []

    def size_for_media(info: Any) -> tuple[int, int]:
        sizes.append(
            options.output_size(info.width, info.height, even=not (info.is_image or image_out))
        )
        return sizes[-1]

    def size_for_frames(w: int, h: int) -> tuple[int, int]:
        return sizes[-1] if sizes else options.output_size(w, h)

    process = upscaler.processor(options, size_for_frames, emit, stats, cancel)
    report = transcode(
        src, dst, process, out_size=size_for_media, options=encode, on_event=emit, cancel=cancel
    )
    return UpscaleReport(
        input=str(src),
        output=str(report.output),
        frames_in=report.frames_in,
        frames_out=report.frames_out,
        seconds=time.perf_counter() - t0,
        seconds_network=stats.seconds_network,
        plan=stats.plan,
        device=str(upscaler.device),
        precision=upscaler.dtype_name(),
        weights=upscaler.source,
        out_width=report.out_width,
        out_height=report.out_height,
        chunks=stats.chunks,
        scene_cuts=stats.cuts,
        plan_changes=stats.changes,
        media=report.to_dict(),
    )


def dry_run_plan(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    options: UpscaleOptions,
    *,
    device: str = "auto",
    precision: str = "auto",
    temporal: bool = False,
) -> dict[str, Any]:
    """What :func:`upscale` would do, without loading a model or writing anything."""
    from .tiling import estimate_bytes, padded_size
    from .video import probe

    options.validate()
    info = probe(src) if str(src) != "-" else None
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    plan: dict[str, Any] = {
        "input": str(src),
        "output": str(dst),
        "device": str(dev),
        "precision": {v: k for k, v in _DTYPES.items()}[dtype],
    }
    if info is None:
        plan["note"] = "standard input: probed when the run starts"
        return plan
    ow, oh = options.output_size(info.width, info.height, even=not info.is_image)
    group = options.chunk if temporal else (options.batch or options.chunk)
    tile = options.tile
    if tile == "auto":
        tile = auto_tile(
            free_memory(dev),
            torch.finfo(dtype).bits // 8,
            min(group, CPU_DECODE_BATCH) if dev.type == "cpu" else group,
            info.height,
            info.width,
            overlap=options.tile_overlap,
        )
    frames = info.frames
    chunks = None
    if frames:
        step = max(1, group - (options.chunk_overlap if temporal else 0))
        chunks = max(1, math.ceil(max(0, frames - group) / step) + 1)
    ph, pw = padded_size(info.height, info.width)
    th, tw = (min(int(tile), ph), min(int(tile), pw)) if tile else (ph, pw)
    peak = estimate_bytes(
        min(group, CPU_DECODE_BATCH) if dev.type == "cpu" else group,
        th,
        tw,
        torch.finfo(dtype).bits // 8,
    )
    plan.update(
        input_streams=info.streams,
        input_size=[info.width, info.height],
        frames=frames,
        output_size=[ow, oh],
        output_container=Path(str(dst)).suffix.lstrip(".") or "(folder)",
        chunk=group,
        chunks=chunks,
        tile=int(tile),
        tile_overlap=options.tile_overlap,
        color_fix=options.color_fix,
        estimated_peak_bytes=int(peak),
    )
    return plan


__all__ = [
    "PRECISIONS",
    "UpscaleOptions",
    "UpscaleReport",
    "Upscaler",
    "dry_run_plan",
    "load_model",
    "resolve_device",
    "resolve_precision",
    "to_array",
    "to_tensor",
    "upscale",
]
