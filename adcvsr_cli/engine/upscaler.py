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

from ..errors import Interrupted
from ..model import AdcVSR
from .chunking import BackoffRunner, Finished, Plan, StreamingChunker, run_chunk_plan
from .colorfix import channel_stats
from .device import dtype_name
from .frames import HostCopy, host_frame, upload_chunk
from .options import UpscaleOptions
from .plan import CPU_DECODE_BATCH, PlanChoice, plan_for_file
from .post import Post
from .tiling import DEFAULT_TILE_OVERLAP, MIN_TILE, TileWeights

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
    precision: str = ""  # the run's, once a chunk ran (bf16 after an fp16 overflow)


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
    precision after an overflow, colour-fix history) lives in its :class:`FileRun`."""

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
    ) -> Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]:
        """A :data:`~adcvsr_cli.media.FrameProcessor` for this network and these options.

        ``cuts``: the indices (in the frames given) where shots start, when already known (a
        segment of a scanned video); otherwise they are detected as the frames come.
        """
        stats = stats if stats is not None else ChunkStats()

        def process(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            run: FileRun | None = None
            for arr in frames:
                if run is None:
                    run = FileRun(self, options, arr, out_size, on_event, stats, cancel, cuts)
                yield from run.feed(arr)
            if run is not None:
                yield from run.finish()

        return process


class FileRun:
    """One file through an :class:`Upscaler`: frames in, finished frames out, chunk by chunk.

    Per chunk the host and the device meet a fixed number of times, whatever the number of
    frames or tiles: the chunk's LR frames go to the device in one copy; the fp16 guard reads one
    value; colour fix, resize and quantisation run on the chunk's finished frames together
    (:class:`~.post.Post`); they come back in one asynchronous copy, which the host waits for
    only after the next chunk is queued. Scene cuts are found on the host from the decoded
    arrays. State here is the file's own (plan, colour-fix history, cuts).
    """

    def __init__(
        self,
        up: Upscaler,
        options: UpscaleOptions,
        first: np.ndarray,
        out_size: Callable[[int, int], tuple[int, int]],
        on_event: OnEvent,
        stats: ChunkStats,
        cancel: threading.Event | None,
        cuts: Collection[int] | None = None,
    ) -> None:
        from .scenes import SceneDetector

        self.up, self.options, self.stats, self.cancel = up, options, stats, cancel
        h, w = first.shape[:2]
        self.known = None if cuts is None else set(cuts)
        use_detector = options.scene_split and self.known is None
        self.detector = SceneDetector() if use_detector else None
        self.post = Post(options.color_fix, out_size(w, h), first.dtype == np.uint16)
        choice = up.choose_plan(h, w, options)
        plan = choice.plan
        # A temporal model takes its whole chunk at once: a smaller batch buys nothing.
        floor = Plan(tile=MIN_TILE, batch=plan.batch if up.temporal else 1)
        self.runner = BackoffRunner(
            plan,
            floor,
            frame_hw=(h, w),
            on_change=lambda line: on_event({"type": "warning", "message": line}),
        )
        self.weights = TileWeights()
        # Image models: frames are independent, so feed the network batch by batch.
        group = options.chunk if up.temporal else plan.batch
        self.chunker = StreamingChunker(
            self._run_chunk,
            chunk=group,
            overlap=options.chunk_overlap if up.temporal else 0,
            full_last=up.temporal,
            out_dtype=torch.float32,
        )
        self.net = up.run_network()
        # A compiled network builds a graph per input shape: give it one per file (the chunk
        # length for a temporal model, the plan's batch for an image model; 1 = pad batches).
        self.static = (group if up.temporal else 1) if up.static_shapes else 0
        self._lr_stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._pending: HostCopy | None = None
        on_event(
            {
                "type": "plan",
                "device": str(up.device),
                "precision": up.dtype_name(),
                **choice.event_fields(),
                "chunk": group,
                "chunk_overlap": self.chunker.overlap,
                "temporal": up.temporal,
            }
        )

    def feed(self, arr: np.ndarray) -> list[np.ndarray]:
        """The next decoded frame; returns the frames finished so far (whole chunks)."""
        if self.known is not None:
            cut = self.chunker.frames_pushed in self.known
        else:
            cut = bool(self.detector.feed(arr)) if self.detector is not None else False
        if cut:
            self.stats.cuts.append(self.chunker.frames_pushed)
        done = self.chunker.push(host_frame(arr), tag=cut, cut=cut and self.up.temporal)
        return self._handover(done)

    def finish(self) -> list[np.ndarray]:
        """End of the file: the remaining frames."""
        out = self._handover(self.chunker.finish())
        if self._pending is not None:
            out += Post.arrays(self._pending)
            self._pending = None
        self.stats.changes = list(self.runner.changes)
        return out

    def _run_chunk(self, x: torch.Tensor) -> torch.Tensor:
        if self.cancel is not None and self.cancel.is_set():
            raise Interrupted("cancelled")
        c = self.chunker.current
        assert c is not None
        t0 = time.perf_counter()
        lr = upload_chunk(x, self.up.device)
        mean, std = channel_stats(lr)
        for i in range(len(c)):
            self._lr_stats[c.start + i] = (mean[i], std[i])
        y = self.up.upscale_clip(
            lr,
            self.runner,
            self.options.tile_overlap,
            self.options.pad_mode,
            self.weights,
            self.net,
            self.static,
        )
        self.stats.seconds_network += time.perf_counter() - t0
        self.stats.chunks += 1
        self.stats.plan = self.runner.plan.describe()
        self.stats.precision = self.net.precision
        return y

    def _handover(self, done: list[Finished]) -> list[np.ndarray]:
        """Start the post-processing of ``done``; return the frames of the chunk before."""
        if not done:
            return []
        stats = [self._lr_stats.pop(f.index) for f in done]
        lr = (torch.stack([m for m, _ in stats]), torch.stack([s for _, s in stats]))
        sr = torch.stack([f.frame for f in done])
        copy = self.post(sr, lr, [bool(f.tag) for f in done])
        self.stats.frames += len(done)
        out = Post.arrays(self._pending) if self._pending is not None else []
        self._pending = copy
        return out
