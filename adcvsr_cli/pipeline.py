"""The upscaling pipeline: a file in, the network over chunks and tiles, a file out.

:func:`load_model` resolves ``--weights`` and puts the network on a device once;
:func:`upscale` runs one file (video or image) through it with the media layer of
:mod:`adcvsr_cli.media`. Decoding, inference and encoding overlap (the media layer decodes and
encodes in worker threads); the engine (:mod:`adcvsr_cli.engine`) is the frame processor in the
middle. :func:`dry_run_plan` says what :func:`upscale` would do without loading anything.

Nothing here prints: progress and notices go to ``on_event`` callbacks as dicts.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .engine.device import (
    PRECISIONS,
    dtype_name,
    resolve_device,
    resolve_precision,
)
from .engine.options import UpscaleOptions
from .engine.plan import plan_for_file
from .engine.upscaler import ChunkStats, OnEvent, Upscaler, noop
from .weights import load_native

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

    ``encode`` is a :class:`~adcvsr_cli.media.EncodeOptions`. Raises the typed errors of
    :mod:`adcvsr_cli.errors`; on any failure ``dst`` is left as it was.
    """
    from .media import EncodeOptions, is_image_path, transcode

    options = options or UpscaleOptions()
    options.validate()
    encode = encode or EncodeOptions()
    emit = on_event or noop
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

    cut = None
    if options.range is not None:
        from .ranges import cut_for

        cut = cut_for(src, upscaler, options)
    # A range runs with the full run's scene cuts around it (None: detected as the frames come).
    cuts = cut.scene_cuts if cut is not None else None
    process = upscaler.processor(options, size_for_frames, emit, stats, cancel, cuts)
    media_size: Any = size_for_media
    if options.compare:
        from .compare import ab_processor, short_name

        process, media_size = ab_processor(
            process, options.compare, size_for_media, short_name(upscaler.source)
        )
    report = transcode(
        src,
        dst,
        process,
        out_size=media_size,
        options=encode,
        on_event=emit,
        cancel=cancel,
        cut=cut,
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
        precision=stats.precision or upscaler.dtype_name(),
        weights=upscaler.source,
        out_width=report.out_width,
        out_height=report.out_height,
        chunks=stats.chunks,
        # In input frame numbers (a range's run counts from its first decoded frame).
        scene_cuts=[c + (cut.first_decoded if cut else 0) for c in stats.cuts],
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
    from .media import is_stream_input, probe

    options.validate()
    info = None if is_stream_input(src) else probe(src)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    plan: dict[str, Any] = {
        "input": str(src),
        "output": str(dst),
        "device": str(dev),
        "precision": dtype_name(dtype),
    }
    if info is None:
        plan["note"] = "standard input: probed when the run starts"
        return plan
    ow, oh = options.output_size(info.width, info.height, even=not info.is_image)
    choice = plan_for_file(
        info.height, info.width, options, device=dev, dtype=dtype, temporal=temporal
    )
    group = options.chunk if temporal else choice.batch
    frames = 1 if info.is_image else info.frames
    chunks = None
    if frames:
        step = max(1, group - (options.chunk_overlap if temporal else 0))
        chunks = max(1, math.ceil(max(0, frames - group) / step) + 1)
    plan.update(
        input_streams=info.streams,
        input_size=[info.width, info.height],
        input_image=info.is_image,
        input_bit_depth=info.bit_depth,
        frames=frames,
        output_size=[ow, oh],
        output_container=Path(str(dst)).suffix.lstrip(".") or "(folder)",
        chunk=group,
        chunk_overlap=options.chunk_overlap if temporal else 0,
        chunks=chunks,
        tile_overlap=options.tile_overlap,
        color_fix=options.color_fix,
        **choice.event_fields(),
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
    "upscale",
]
