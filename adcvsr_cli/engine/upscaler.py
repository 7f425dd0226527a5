"""The network on a device, reusable across files: :class:`Upscaler` (the configured network,
its plans, one clip through tiles and the out-of-memory back-off), :class:`RunNetwork` (one
file's precision) and :meth:`Upscaler.processor`, the stages of :mod:`.stages` as a function of
the decoded frames.

Nothing here prints: progress and notices go to ``on_event`` callbacks as dicts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from itertools import chain
from typing import Any

import numpy as np
import torch

from ..model import AdcVSR
from .chunking import BackoffRunner, Plan, run_chunk_plan
from .device import dtype_name
from .options import UpscaleOptions
from .plan import CPU_DECODE_BATCH, PlanChoice, plan_for_file
from .stages import ChunkStats, FileStages, noop
from .tiling import DEFAULT_TILE_OVERLAP, TileWeights
from .yuv import YuvLayout

Event = dict[str, Any]
OnEvent = Callable[[Event], None]
PlanesFor = Callable[[int, int, bool], YuvLayout | None]
"""(out_w, out_h, deep source) -> the planes the encoder takes, or None for RGB frames."""

__all__ = ["ChunkStats", "Event", "OnEvent", "PlanesFor", "RunNetwork", "Upscaler", "noop"]


class RunNetwork:
    """The network one run (one file) goes through: the shared, configured network, or after an
    fp16 overflow this run's own bf16 copy (the shared weights stay fp16 for the next file:
    casting them to bf16 and back would lose mantissa bits)."""

    def __init__(self, forward: Any, dtype: torch.dtype) -> None:
        self.forward = forward
        self.dtype = dtype

    def to_bf16(self, shared: Any) -> None:
        self.forward = shared.reconfigured(torch.bfloat16, copy_model=True)
        self.dtype = torch.bfloat16

    @property
    def precision(self) -> str:
        return dtype_name(self.dtype)


class Upscaler:
    """A loaded network on a device, reusable for any number of files: a run's own state (plan,
    precision after an overflow, colour-fix history) lives in its stages (:mod:`.stages`)."""

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
        )  # configures self.model in place (the same module as self.network.model)

    @property
    def compiled(self) -> bool:
        return bool(self.network.info.get("compiled"))

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
        weights: TileWeights | None = None,
        net: RunNetwork | None = None,
        static: int = 0,
    ) -> torch.Tensor:
        """(T, 3, H, W) in [-1, 1] (one clip, or independent frames for an image model) ->
        (T, 3, 4H, 4W) float32, through tiles and the out-of-memory back-off.

        fp16's range is guarded once per chunk: the finiteness of the whole output is reduced on
        the device and read once; a non-finite chunk is run again in bf16. ``net`` is the run's
        own network state (a file keeps its bf16 switch; the shared network is never changed).
        """
        weights = weights if weights is not None else TileWeights()
        net = net if net is not None else self.run_network()

        def run(plan: Plan) -> torch.Tensor:
            return run_chunk_plan(
                net.forward,
                x,
                plan,
                self.temporal,
                tile_overlap,
                self.dims.scale,
                self.dims.multiple,
                pad_mode,
                weights,
                static,
            )

        with torch.inference_mode():
            y = runner(run)
            if net.dtype == torch.float16 and not bool(torch.isfinite(y).all()):
                self.emit(
                    {
                        "type": "warning",
                        "message": "fp16 overflowed on this input: switching the network to bf16 "
                        "for the rest of this file",
                    }
                )
                net.to_bf16(self.network)
                y = runner(run)
        return y

    @property
    def static_shapes(self) -> bool:
        """Whether the network wants one input shape per file (compiled or CUDA-graphed)."""
        fp = getattr(self.network, "fp", None)
        return bool(fp is not None and (fp.compile or fp.graphs))

    def run_network(self) -> RunNetwork:
        """Fresh per-run network state: the shared network in its configured precision."""
        return RunNetwork(self.network, self.dtype)

    # -- the frame processor ------------------------------------------------------------------
    def processor(
        self,
        options: UpscaleOptions,
        out_size: Callable[[int, int], tuple[int, int]],
        on_event: OnEvent = noop,
        stats: ChunkStats | None = None,
        cancel: threading.Event | None = None,
        cuts: Collection[int] | None = None,
        planes: PlanesFor | None = None,
    ) -> Callable[[Iterable[np.ndarray]], Iterator[Any]]:
        """The engine's stages (:class:`.stages.FileStages`, the chain ``adcvsr upscale`` runs)
        as one function of the decoded frames, for callers that decode themselves (segments,
        previews): the frames plan them, at the first frame.

        ``out_size``: (in_w, in_h) -> (out_w, out_h). The output is deep (uint16) when the
        frames are: decoders give uint16 for an input over 8 bits, as the full run's session
        decides. ``cuts``: the indices (in the frames given) where shots start, when already
        known (a segment of a scanned video); otherwise they are detected as the frames come.
        ``planes``: asked with the output size and the depth; when it gives a layout, the frames
        come out as that layout's (Y, U, V) planes, converted on the device, instead of
        (H, W, 3) RGB arrays.
        """

        def process(frames: Iterable[np.ndarray]) -> Iterator[Any]:
            it = iter(frames)
            first = next(it, None)
            if first is None:
                return
            (h, w), deep = first.shape[:2], first.dtype == np.uint16
            size = out_size(w, h)
            layout = planes(*size, deep) if planes is not None else None
            stages = FileStages(self, options, on_event, cancel, cuts, stats)
            stages.open(h, w, size, deep, layout)
            yield from stages(chain([first], it))

        return process
