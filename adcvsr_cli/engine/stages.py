"""The engine's stages for one file, in the order the frames go through them:

    plan   = RunPlan.choose(up, options, h, w, on_event)   # batch x tile, back-off, chunk length
    infer  = Infer(up, options, plan, stats, cancel)       # frames -> network over chunks, tiles
    post   = Post(color_fix, size, deep)                   # colour fix, resize, quantise, copy
    arrays = one_behind(post, (post(c.sr, c.lr, c.cuts) for c in infer.chunks(frames)))

:class:`FileStages` is that chain, built in this one place for every caller: ``adcvsr upscale``
(:func:`adcvsr_cli.pipeline.upscale`, which decodes and encodes on worker threads) and the
callers that decode themselves (:meth:`~.upscaler.Upscaler.processor`: segments, previews), so
that a segment or a preview frame is the full run's frame.

Each chunk crosses between host and device once each way: its LR frames go up in one copy, its
finished frames come back in one asynchronous copy that the host waits for only after the next
chunk is queued (:func:`one_behind`). Scene cuts are found on the host from the decoded arrays
(on the decode thread when the caller runs :meth:`Infer.mark` there).
State here is the file's own (plan, precision after an overflow, colour-fix history, cuts).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import Interrupted
from .chunking import BackoffRunner, Finished, Plan, StreamingChunker
from .colorfix import LRStats, channel_stats
from .frames import HostCopy, host_frame, upload_chunk
from .options import UpscaleOptions
from .plan import PlanChoice
from .post import Post
from .tiling import MIN_TILE, TileWeights
from .yuv import YuvLayout

if TYPE_CHECKING:
    from ..media.threads import Crew, Worker
    from .upscaler import Upscaler

OnEvent = Callable[[dict[str, Any]], None]


def noop(_: dict[str, Any]) -> None:
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


@dataclass
class RunPlan:
    """What one file runs with: the planner's choice, the back-off runner that may shrink it,
    the frames per network call (``group``) and their overlap, and the static clip length of a
    compiled network (0: shapes may vary)."""

    choice: PlanChoice
    runner: BackoffRunner
    group: int
    overlap: int
    static: int

    @classmethod
    def choose(
        cls, up: Upscaler, options: UpscaleOptions, h: int, w: int, on_event: OnEvent
    ) -> RunPlan:
        """Plan h x w LR frames on ``up``'s device (memory as free now); emits the plan event."""
        choice = up.choose_plan(h, w, options)
        plan = choice.plan
        # A temporal model takes its whole chunk at once: a smaller batch buys nothing.
        floor = Plan(tile=MIN_TILE, batch=plan.batch if up.temporal else 1)
        runner = BackoffRunner(
            plan,
            floor,
            frame_hw=(h, w),
            on_change=lambda line: on_event({"type": "warning", "message": line}),
        )
        # Image models: frames are independent, so feed the network batch by batch.
        group = options.chunk if up.temporal else plan.batch
        overlap = options.chunk_overlap if up.temporal else 0
        # A compiled network builds a graph per input shape: give it one per file (the chunk
        # length for a temporal model, the plan's batch for an image model; 1 = pad batches).
        static = (group if up.temporal else 1) if up.static_shapes else 0
        on_event(
            {
                "type": "plan",
                "device": str(up.device),
                "precision": up.dtype_name(),
                **choice.event_fields(),
                "chunk": group,
                "chunk_overlap": overlap,
                "temporal": up.temporal,
            }
        )
        return cls(choice, runner, group, overlap, static)


@dataclass
class Upscaled:
    """The finished frames of one chunk on the device, (N, 3, 4H, 4W) float32, with the
    statistics of their LR frames (for the colour fix) and their scene-cut flags."""

    sr: torch.Tensor
    lr: LRStats
    cuts: list[bool]


class Infer:
    """LR frames in, :class:`Upscaled` chunks out: scene cuts, temporal chunks with their
    cross-fades, the network over tiles with the out-of-memory back-off and the fp16 guard.

    ``cuts``: the indices where shots start, when already known (a segment of a scanned video);
    otherwise they are detected as the frames come (when ``options.scene_split``).
    """

    def __init__(
        self,
        up: Upscaler,
        options: UpscaleOptions,
        plan: RunPlan,
        stats: ChunkStats,
        cancel: threading.Event | None = None,
        cuts: Collection[int] | None = None,
    ) -> None:
        from .scenes import SceneDetector

        self.up, self.options, self.plan, self.stats, self.cancel = up, options, plan, stats, cancel
        self.known = None if cuts is None else set(cuts)
        use_detector = options.scene_split and self.known is None
        self.detector = SceneDetector() if use_detector else None
        self.weights = TileWeights()  # built once per plan on the device, then reused
        self.net = up.run_network()
        self.chunker = StreamingChunker(
            self._run_chunk,
            chunk=plan.group,
            overlap=plan.overlap,
            full_last=up.temporal,
            out_dtype=torch.float32,
        )
        self._lr_stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._marks: collections.deque[bool] | None = None  # cuts found on the decode side

    @property
    def detects(self) -> bool:
        """Whether scene cuts are detected from the frames (not given, not off)."""
        return self.detector is not None

    def mark(self, arr: np.ndarray) -> None:
        """Detect whether a shot starts at ``arr``, on the thread that decodes (before the frame
        is queued): :meth:`push` then takes the answers in order instead of detecting itself."""
        assert self.detector is not None
        if self._marks is None:
            self._marks = collections.deque()
        self._marks.append(bool(self.detector.feed(arr)))

    def chunks(self, frames: Iterable[np.ndarray]) -> Iterator[Upscaled]:
        """Every frame of ``frames`` upscaled, a chunk at a time, in order."""
        for arr in frames:
            done = self.push(arr)
            if done is not None:
                yield done
        done = self.finish()
        if done is not None:
            yield done

    def push(self, arr: np.ndarray) -> Upscaled | None:
        """The next decoded (H, W, 3) frame; the frames it finished, if any."""
        if self.known is not None:
            cut = self.chunker.frames_pushed in self.known
        elif self._marks is not None:
            cut = self._marks.popleft()
        else:
            cut = bool(self.detector.feed(arr)) if self.detector is not None else False
        if cut:
            self.stats.cuts.append(self.chunker.frames_pushed)
        done = self.chunker.push(host_frame(arr), tag=cut, cut=cut and self.up.temporal)
        return self._collect(done)

    def finish(self) -> Upscaled | None:
        """End of the file: the remaining frames."""
        done = self._collect(self.chunker.finish())
        self.stats.changes = list(self.plan.runner.changes)
        return done

    def _collect(self, done: list[Finished]) -> Upscaled | None:
        if not done:
            return None
        stats = [self._lr_stats.pop(f.index) for f in done]
        lr = (torch.stack([m for m, _ in stats]), torch.stack([s for _, s in stats]))
        self.stats.frames += len(done)
        return Upscaled(_together([f.frame for f in done]), lr, [bool(f.tag) for f in done])

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
            self.plan.runner,
            self.options.tile_overlap,
            self.options.pad_mode,
            self.weights,
            self.net,
            self.plan.static,
        )
        self.stats.seconds_network += time.perf_counter() - t0
        self.stats.chunks += 1
        self.stats.plan = self.plan.runner.plan.describe()
        self.stats.precision = self.net.precision
        return y


def _together(frames: list[torch.Tensor]) -> torch.Tensor:
    """The frames as one (N, ...) tensor: a view when they already lie one after the other in
    one tensor (an image model's chunk output, cut into frames), else a stacked copy. A copy of
    a chunk of x4 frames is a pass over hundreds of MB on a CPU."""
    first = frames[0]
    size = first.numel()
    consecutive = all(
        f.is_contiguous()
        and f.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
        and f.storage_offset() == first.storage_offset() + k * size
        and f.shape == first.shape
        for k, f in enumerate(frames)
    )
    if not consecutive:
        return torch.stack(frames)
    shape, stride = (len(frames), *first.shape), (size, *first.stride())
    return first.as_strided(shape, stride, first.storage_offset())


def one_behind(post: Post, copies: Iterable[HostCopy]) -> Iterator[Any]:
    """The host frames of each chunk's copy (``post.arrays``: what the encoder takes), waited
    for only once the next chunk is queued on the device (so the copy and the host's encoding
    overlap its compute)."""
    pending: HostCopy | None = None
    for copy in copies:
        if pending is not None:
            yield from post.arrays(pending)
        pending = copy
    if pending is not None:
        yield from post.arrays(pending)


class FileStages:
    """The engine's stages for one file: :meth:`open` plans it once its frame size is known;
    calling it runs the decoded frames through inference and post-processing, chunk by chunk.
    ``cuts``: where shots start (frame indices of the frames given), when already known;
    ``stats``: filled as the chunks run (a fresh :class:`ChunkStats` when not given)."""

    def __init__(
        self,
        upscaler: Upscaler,
        options: UpscaleOptions,
        emit: OnEvent = noop,
        cancel: threading.Event | None = None,
        cuts: Collection[int] | None = None,
        stats: ChunkStats | None = None,
    ) -> None:
        self.up, self.options, self.emit, self.cancel = upscaler, options, emit, cancel
        self.cuts = cuts
        self.stats = stats if stats is not None else ChunkStats()
        self.infer: Infer | None = None
        self.post: Post | None = None
        self.aside: Worker | None = None

    def open(
        self, h: int, w: int, size: tuple[int, int], deep: bool, layout: YuvLayout | None = None
    ) -> None:
        """Plan h x w LR frames (batch x tile for this device, the chunks) and the post stage:
        frames of ``size`` = (out_w, out_h), uint16 when ``deep``, as ``layout``'s planes when
        given (converted on the device), else RGB arrays."""
        plan = RunPlan.choose(self.up, self.options, h, w, self.emit)
        self.infer = Infer(self.up, self.options, plan, self.stats, self.cancel, self.cuts)
        self.post = Post(self.options.color_fix, size, deep, layout)

    @property
    def on_decoded(self) -> Callable[[np.ndarray], None] | None:
        """What runs on the decode thread per frame: scene detection, when it is on."""
        return self.infer.mark if self.infer is not None and self.infer.detects else None

    def post_aside(self, crew: Crew) -> None:
        """On the CPU the post stage is computation on the host itself: run it on a worker
        thread of ``crew`` so that it overlaps the next chunk's network (on a GPU it is queued
        device work whose copy is waited for one chunk later: it stays on this thread)."""
        if self.up.device.type == "cpu":
            self.aside = crew.worker(self._post_chunk, 1, "adcvsr-post", lambda e: e)

    def __call__(self, frames: Iterable[np.ndarray]) -> Iterator[Any]:
        infer, post = self.infer, self.post
        assert infer is not None and post is not None, "open() first"
        chunks = infer.chunks(frames)  # infer: scene cuts, chunks, tiles, the network
        if self.aside is not None:
            return self._posted_aside(chunks)
        copies = (post(c.sr, c.lr, c.cuts) for c in chunks)  # post: colour, resize, quantise
        return one_behind(post, copies)  # the host frames, one chunk behind the device

    def _post_chunk(self, c: Upscaled) -> list[Any]:
        assert self.post is not None
        return list(self.post.arrays(self.post(c.sr, c.lr, c.cuts)))

    def _posted_aside(self, chunks: Iterator[Upscaled]) -> Iterator[Any]:
        assert self.aside is not None
        for c in chunks:
            self.aside.put(c)
            yield from self.aside.ready()
        yield from self.aside.rest()
