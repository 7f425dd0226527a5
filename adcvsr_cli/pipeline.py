"""The upscaling pipeline: a file in, the network over chunks and tiles, a file out.

:func:`load_model` resolves ``--weights`` and puts the network on a device once;
:func:`upscale` runs one file (video or image) through it, the data flow in one place:
decode (:mod:`adcvsr_cli.media`, a worker thread, which also finds the scene cuts) -> plan ->
infer (chunks, tiles; this thread) -> post (colour fix, resize, quantise; queued device work on
a GPU, a worker thread on the CPU) -> encode (a worker thread); the stages are
:class:`~adcvsr_cli.engine.stages.FileStages` (the one chain, which segments and previews run
too), the threads and bounded queues those of :mod:`adcvsr_cli.media.threads`. :func:`dry_run_plan` says what :func:`upscale` would do
without loading anything.

Nothing here prints: progress and notices go to ``on_event`` callbacks as dicts.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.device import (
    PRECISIONS,
    dtype_name,
    resolve_device,
    resolve_precision,
)
from .engine.options import UpscaleOptions
from .engine.plan import plan_for_file
from .engine.stages import ChunkStats, FileStages
from .engine.upscaler import OnEvent, Upscaler, noop
from .engine.yuv import layout_for
from .weights import load_native

if TYPE_CHECKING:
    from .media.transcoder import Session

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


def _open_stages(stages: FileStages, session: Session, size: tuple[int, int], rgb: bool) -> None:
    """Plan the stages for the session's input: its probed frame size and depth, frames of
    ``size`` as the encoder's planes where :func:`~.engine.yuv.layout_for` can make them on the
    device (``rgb``: RGB frames all the same, for ``--compare``, which puts them together)."""
    info, deep = session.source.info, session.deep
    yuv = None if rgb else session.yuv_target()
    layout = None if yuv is None else layout_for(*yuv, *size, deep_source=deep)
    stages.open(info.height, info.width, size, deep, layout)


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

    decode (a worker thread) -> plan -> infer (chunks, tiles) -> post (colour fix, resize,
    quantise) -> encode (a worker thread), the threads joined by bounded queues.

    ``encode`` is a :class:`~adcvsr_cli.media.EncodeOptions`. Raises the typed errors of
    :mod:`adcvsr_cli.errors`; on any failure ``dst`` is left as it was.
    """
    from .media import EncodeOptions, Events, is_image_path, open_session

    options = options or UpscaleOptions()
    options.validate()
    encode = encode or EncodeOptions()
    emit = on_event or noop
    t0, t_start = time.perf_counter(), time.monotonic()
    cut = None
    if options.range is not None:
        from .ranges import cut_for

        cut = cut_for(src, upscaler, options, encode.deinterlace)
    # A range runs with the full run's scene cuts around it (None: detected as the frames come).
    cuts = cut.scene_cuts if cut is not None else None
    image_out = str(dst) != "-" and is_image_path(dst)
    stages = FileStages(upscaler, options, emit, cancel, cuts)

    def size(info: Any) -> tuple[int, int]:
        return options.size_for(info, image_out)

    process: Any = stages
    media_size: Any = size
    if options.compare:
        from .compare import ab_processor, short_name

        process, media_size = ab_processor(
            stages, options.compare, size, short_name(upscaler.source)
        )
    events = Events(emit)
    with open_session(src, dst, out_size=media_size, options=encode, events=events, cut=cut) as s:
        _open_stages(stages, s, size(s.source.info), bool(options.compare))  # plan
        # decode (+ scene cuts, on the decode side) and encode, each in its worker thread
        run = s.start(cancel, on_frame=stages.on_decoded)
        stages.post_aside(run.crew)  # post: a worker thread too, on the CPU
        for arr in process(run.decoded()):  # infer, post
            run.put(arr)  # encode
        report = s.commit(run.end(), t_start)  # verify, publish
    first = cut.first_decoded if cut is not None else 0
    return _report(src, report, upscaler, stages.stats, time.perf_counter() - t0, first)


def _report(
    src: Any, media: Any, upscaler: Upscaler, stats: ChunkStats, seconds: float, first: int
) -> UpscaleReport:
    """The file's report; ``first``: the input frame number of the first frame decoded."""
    return UpscaleReport(
        input=str(src),
        output=str(media.output),
        frames_in=media.frames_in,
        frames_out=media.frames_out,
        seconds=seconds,
        seconds_network=stats.seconds_network,
        plan=stats.plan,
        device=str(upscaler.device),
        precision=stats.precision or upscaler.dtype_name(),
        weights=upscaler.source,
        out_width=media.out_width,
        out_height=media.out_height,
        chunks=stats.chunks,
        # In input frame numbers (a range's run counts from its first decoded frame).
        scene_cuts=[c + first for c in stats.cuts],
        plan_changes=stats.changes,
        media=media.to_dict(),
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
    from .media import is_image_path, is_stream_input, probe

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
    ow, oh = options.size_for(info, str(dst) != "-" and is_image_path(dst))  # as upscale does
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
    "FileStages",
    "UpscaleOptions",
    "UpscaleReport",
    "Upscaler",
    "dry_run_plan",
    "load_model",
    "resolve_device",
    "resolve_precision",
    "upscale",
]
