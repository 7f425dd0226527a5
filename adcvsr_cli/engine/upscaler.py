"""The network on a device, run over chunks and tiles: :class:`Upscaler` and its frame processor.

  uint8/uint16 RGB (H, W, 3) --to device, [-1, 1]--> scene detector --> StreamingChunker
  --> network over tiles (OOM back-off) --> colour fix --> resize to the asked size
  --> rounded uint8/uint16 (out_h, out_w, 3)

Nothing here prints: progress and notices go to ``on_event`` callbacks as dicts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import Interrupted
from ..model import AdcVSR
from .chunking import BackoffRunner, Plan, StreamingChunker, run_chunk_plan
from .colorfix import make_color_fix
from .device import dtype_name
from .frames import to_array, to_tensor
from .options import UpscaleOptions
from .plan import CPU_DECODE_BATCH, PlanChoice, plan_for_file
from .tiling import DEFAULT_TILE_OVERLAP, MIN_TILE

Event = dict[str, Any]
OnEvent = Callable[[Event], None]


def noop(_: Event) -> None:
    pass


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
        self.emit = on_event or noop
        from ..fastpath import FastPath, configure

        spec = "+".join(p for p in (fastpath, "compile" if compile else None) if p)
        # The one configuration path (dtype, layout per part, compiler, graphs, cuDNN): the
        # benchmark's variants build their networks through it too.
        self.network = configure(
            self.model,
            device=device,
            dtype=dtype,
            fastpath=FastPath.parse(spec) if spec else FastPath(),
            decode_group=CPU_DECODE_BATCH if device.type == "cpu" else None,
            on_event=self.emit,
        )
        self.model = self.network.model

    @property
    def compiled(self) -> bool:
        return bool(self.network.info.get("compiled"))

    def _guarded(self, x: torch.Tensor, clip_len: int) -> torch.Tensor:
        """The network call, with fp16's range guarded: a non-finite output reruns in bf16."""
        y = self.network(x, clip_len)
        if self.dtype == torch.float16 and not bool(torch.isfinite(y).all()):
            self.emit(
                {
                    "type": "warning",
                    "message": "fp16 overflowed on this input: switching the network to bf16 for the rest of the run",
                }
            )
            self.dtype = torch.bfloat16
            self.network = self.network.reconfigured(torch.bfloat16)
            y = self.network(x, clip_len)
        return y

    def decode_batch(self, n: int) -> int:
        return min(n, CPU_DECODE_BATCH) if self.device.type == "cpu" else n

    def dtype_name(self) -> str:
        return dtype_name(self.dtype)

    # -- plans --------------------------------------------------------------------------------
    def choose_plan(self, h: int, w: int, options: UpscaleOptions) -> PlanChoice:
        """The plan for h x w LR frames with ``options`` on this device, memory as free now."""
        return plan_for_file(
            h, w, options, device=self.device, dtype=self.dtype, temporal=self.temporal
        )

    def initial_plan(self, h: int, w: int, options: UpscaleOptions) -> Plan:
        return self.choose_plan(h, w, options).plan

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
        on_event: OnEvent = noop,
        stats: ChunkStats | None = None,
        cancel: threading.Event | None = None,
        cuts: Collection[int] | None = None,
    ) -> Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]:
        """A :data:`~adcvsr_cli.media.FrameProcessor` for this network and these options.

        ``cuts``: the indices (in the frames given) where shots start, when already known (a
        segment of a scanned video); otherwise they are detected as the frames come.
        """
        stats = stats if stats is not None else ChunkStats()

        def process(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            from .scenes import SceneDetector

            known = None if cuts is None else set(cuts)
            detector = SceneDetector() if options.scene_split and known is None else None
            fix = make_color_fix(options.color_fix)
            runner: BackoffRunner | None = None
            chunker: StreamingChunker | None = None
            size: tuple[int, int] | None = None
            deep = False

            def run_chunk(x: torch.Tensor) -> torch.Tensor:
                if cancel is not None and cancel.is_set():
                    raise Interrupted("cancelled")
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
                    choice = self.choose_plan(h, w, options)
                    plan = choice.plan
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
                            **choice.event_fields(),
                            "chunk": group,
                            "chunk_overlap": chunker.overlap,
                            "temporal": self.temporal,
                        }
                    )
                lr = to_tensor(arr, self.device)
                if known is not None:
                    cut = chunker.frames_pushed in known
                else:
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
