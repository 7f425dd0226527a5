"""Temporal chunks: plan them, cross-fade their seams, stream them, back off on out-of-memory.

A temporal model (AdcVSR) sees the frames of one chunk together; the chunk length it was trained
on is 25. Long videos are cut into chunks that overlap by ``overlap`` frames; inside an overlap
the two chunks' outputs are cross-faded with weights that sum to one, so no seam is a hard switch.
Chunks never span a scene cut (a new shot starts its own chunk, and nothing is blended across it).

The chunk plan, for one shot of ``L`` frames (``step = chunk - overlap``):

- ``L <= chunk``: one chunk, the whole shot.
- otherwise chunks start at ``0, step, 2*step, ...`` while they fit; if frames remain, a last chunk
  ends at the shot's end and is extended backwards to the full ``chunk`` (``full_last``), so that
  the model never sees a tiny clip. Its extra leading frames are context only: it blends in over
  the *same* ``overlap`` frames as a regular successor would (the last ``overlap`` frames of the
  previous chunk), and before those its weight is 0.

So a frame is covered with nonzero weight by at most two chunks, a chunk's outputs are final as
soon as the next chunk has run, and the streaming runner (:class:`StreamingChunker`) produces the
same chunks as the offline planner (:func:`plan_chunks`) without knowing the length in advance.

For a model without temporal blocks frames are independent: use ``overlap=0`` and
``full_last=False`` (chunks are then plain batches, and chunking is exact) and no cuts.

This module imports only torch and the standard library.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import torch
from torch import Tensor

from ..errors import OutOfMemory, UsageError
from .tiling import MIN_TILE, TileWeights, padded_size, ramp, run_tiled

DEFAULT_CHUNK = 25  # the clip length AdcVSR was trained and tested on
DEFAULT_OVERLAP = 4

T = TypeVar("T")


@dataclass(frozen=True)
class Chunk:
    """Frames ``start .. end-1`` (end exclusive), run through the network together."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def check_chunk_args(chunk: int, overlap: int) -> None:
    """Raise :class:`UsageError` naming the option when ``--chunk``/``--chunk-overlap`` are invalid."""
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise UsageError(f"--chunk must be a positive integer, got {chunk!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise UsageError(f"--chunk-overlap must be a non-negative integer, got {overlap!r}")
    if 2 * overlap > chunk:
        raise UsageError(
            f"--chunk-overlap {overlap} is more than half of --chunk {chunk}: "
            f"use at most {chunk // 2}"
        )


def shot_bounds(n_frames: int, cuts: Iterable[int] = ()) -> list[tuple[int, int]]:
    """Split ``0 .. n_frames-1`` at ``cuts`` (indices where a new shot starts) into (start, end)."""
    inner = sorted({int(c) for c in cuts if 0 < int(c) < n_frames})
    edges = [0, *inner, n_frames]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def _shot_chunks(a: int, b: int, chunk: int, overlap: int, full_last: bool) -> list[Chunk]:
    if b - a <= chunk:
        return [Chunk(a, b)]
    step = chunk - overlap
    out = [Chunk(a, a + chunk)]
    while out[-1].end < b:
        nxt = out[-1].start + step
        if nxt + chunk <= b:
            out.append(Chunk(nxt, nxt + chunk))
        else:
            out.append(Chunk(b - chunk if full_last else nxt, b))
    return out


def plan_chunks(
    n_frames: int, chunk: int, overlap: int, cuts: Sequence[int] = (), full_last: bool = True
) -> list[Chunk]:
    """The chunks covering frames ``0 .. n_frames-1`` in order (see the module docstring).

    ``cuts`` are indices where a new shot starts; no chunk spans one. ``overlap`` must be at most
    half of ``chunk``. With ``full_last`` the last chunk of a shot longer than ``chunk`` is
    extended backwards to the full length.
    """
    check_chunk_args(chunk, overlap)
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    return [
        c
        for a, b in shot_bounds(n_frames, cuts)
        for c in _shot_chunks(a, b, chunk, overlap, full_last)
    ]


def crossfade_weights(chunks: Sequence[Chunk], overlap: int) -> list[Tensor]:
    """Per chunk, a float64 weight per frame; across the chunks covering a frame they sum to one.

    Consecutive chunks that overlap (same shot) cross-fade over the last ``overlap`` frames of the
    earlier one with a raised-cosine ramp; where a later chunk reaches further back than that, its
    weight is 0 there (context only). Chunks that merely abut (a scene cut) do not blend.
    """
    weights = [torch.ones(len(c), dtype=torch.float64) for c in chunks]
    for i in range(1, len(chunks)):
        prev, cur = chunks[i - 1], chunks[i]
        if cur.start >= prev.end:
            continue  # a cut, or no overlap: nothing to blend
        n = min(overlap, prev.end - cur.start)
        w0 = prev.end - n  # first blended frame
        weights[i][: w0 - cur.start] = 0.0
        if n:
            r = ramp(n, torch.float64)
            weights[i][w0 - cur.start : prev.end - cur.start] = r
            weights[i - 1][w0 - prev.start : prev.end - prev.start] = 1.0 - r
    return weights


@dataclass(frozen=True)
class Finished:
    """One output frame, in order: its index in the stream, the caller's tag, and the frame."""

    index: int
    tag: Any
    frame: Tensor


class StreamingChunker:
    """Feed LR frames one by one; get finished output frames back in order, in bounded memory.

    ``run_chunk(frames)`` receives (T, C, H, W) — the frames of one chunk stacked — and must return
    (T, C', sH, sW). Call :meth:`push` for every frame (``cut=True`` when a new shot starts at it)
    and :meth:`finish` at the end of the stream; both return the :class:`Finished` frames that are
    ready. The chunks run are exactly those of :func:`plan_chunks` for the same length and cuts,
    and outputs are blended with :func:`crossfade_weights`.

    Memory: at most ``chunk + (chunk - overlap) - 1`` input frames are held (with ``full_last``;
    ``chunk`` without), and at most ``overlap`` output frames wait for the next chunk between calls
    (plus the ``chunk`` outputs of the call itself while they are blended).

    Blending happens in float32 (or the output's dtype when that is float64); finished frames are
    in ``out_dtype`` (default: the dtype ``run_chunk`` returned).
    """

    def __init__(
        self,
        run_chunk: Callable[[Tensor], Tensor],
        chunk: int = DEFAULT_CHUNK,
        overlap: int = DEFAULT_OVERLAP,
        full_last: bool = True,
        out_dtype: torch.dtype | None = None,
    ) -> None:
        check_chunk_args(chunk, overlap)
        self.run_chunk = run_chunk
        self.chunk = chunk
        self.overlap = overlap
        self.full_last = full_last
        self.out_dtype = out_dtype
        self.chunks_run: list[Chunk] = []  # for reports and tests; one small tuple per chunk
        self._inputs: deque[tuple[int, Any, Tensor]] = deque()  # (index, tag, LR frame)
        self._pending: deque[tuple[int, Any, Tensor]] = deque()  # raw outputs of the last chunk
        self._n = 0  # frames pushed
        self._shot_start = 0
        self._next_start = 0  # start of the next regular chunk of this shot
        self._last: Chunk | None = None  # last chunk run in this shot
        self._emitted = 0
        self.current: Chunk | None = None  # the chunk ``run_chunk`` is running, while it runs

    # -- introspection (tests assert on these) -------------------------------------------------
    @property
    def buffered_inputs(self) -> int:
        return len(self._inputs)

    @property
    def pending_outputs(self) -> int:
        return len(self._pending)

    @property
    def frames_pushed(self) -> int:
        """Frames pushed so far: the index the next pushed frame gets."""
        return self._n

    @property
    def max_buffered_inputs(self) -> int:
        """The bound on :attr:`buffered_inputs` after any :meth:`push`."""
        return self.chunk + (self.chunk - self.overlap - 1 if self.full_last else 0)

    # -- feeding ---------------------------------------------------------------------------------
    def push(self, frame: Tensor, tag: Any = None, cut: bool = False) -> list[Finished]:
        """Add the next LR frame (C, H, W). ``cut``: a new shot starts at this frame."""
        done: list[Finished] = []
        if cut and self._n > self._shot_start:
            done += self._end_shot()
            self._shot_start = self._next_start = self._n
        self._inputs.append((self._n, tag, frame))
        self._n += 1
        if self._n - self._next_start == self.chunk:
            done += self._run(Chunk(self._next_start, self._n))
            self._next_start += self.chunk - self.overlap
            keep_from = self._last.start + 1 if self.full_last else self._next_start  # type: ignore[union-attr]
            while self._inputs and self._inputs[0][0] < keep_from:
                self._inputs.popleft()
        return done

    def finish(self) -> list[Finished]:
        """End of stream: run what is left and return the remaining frames."""
        done = self._end_shot()
        self._shot_start = self._next_start = self._n
        return done

    def _end_shot(self) -> list[Finished]:
        done: list[Finished] = []
        b = self._n
        covered = self._last.end if self._last is not None else self._shot_start
        if covered < b:
            if self._last is None:
                tail = Chunk(self._shot_start, b)  # a shot no longer than one chunk
            elif self.full_last:
                tail = Chunk(max(self._shot_start, b - self.chunk), b)
            else:
                tail = Chunk(self._next_start, b)
            done += self._run(tail)
        done += self._flush_pending(blend=None)
        self._inputs.clear()
        self._last = None
        return done

    # -- running and blending ------------------------------------------------------------------
    def _run(self, c: Chunk) -> list[Finished]:
        items = [it for it in self._inputs if c.start <= it[0] < c.end]
        assert [it[0] for it in items] == list(range(c.start, c.end)), "chunk frames missing"
        self.current = c
        try:
            y = self.run_chunk(torch.stack([it[2] for it in items]))
        finally:
            self.current = None
        if y.dim() != 4 or y.shape[0] != len(c):
            raise ValueError(
                f"run_chunk returned {tuple(y.shape)} for a chunk of {len(c)} frames; "
                f"expected ({len(c)}, C, H, W)"
            )
        self.chunks_run.append(c)
        if self.out_dtype is None:
            self.out_dtype = y.dtype
        prev = self._last
        self._last = c
        if prev is None:
            w = crossfade_weights([c], self.overlap)[0]
            wprev = None
        else:
            wprev, w = crossfade_weights([prev, c], self.overlap)
        done = self._flush_pending(blend=(prev, wprev, c, w, y)) if prev is not None else []
        # Outputs of this chunk not blended with its predecessor: final up to where the next chunk
        # would blend in (the last `overlap` frames), which stay pending, raw.
        hold_from = c.end - self.overlap
        for i in range(c.start, c.end):
            if i < self._emitted or w[i - c.start] == 0:
                continue
            tag = items[i - c.start][1]
            if i >= hold_from:
                # A copy, so that the chunk's whole output can be freed before the next chunk.
                self._pending.append((i, tag, y[i - c.start].clone()))
            else:
                done.append(self._finish(i, tag, y[i - c.start]))
        return done

    def _flush_pending(self, blend: tuple | None) -> list[Finished]:
        done = []
        while self._pending:
            i, tag, raw = self._pending.popleft()
            if blend is None:
                done.append(self._finish(i, tag, raw))
                continue
            prev, wprev, c, w, y = blend
            # Pending frames are the last `overlap` of the previous chunk, where the next one of
            # the same shot always blends in (see crossfade_weights).
            assert c.start <= i < prev.end, f"frame {i} pending outside the blend window"
            acc_dtype = torch.promote_types(raw.dtype, torch.float32)
            a, b = float(wprev[i - prev.start]), float(w[i - c.start])
            mixed = raw.to(acc_dtype) * a + y[i - c.start].to(acc_dtype) * b
            done.append(self._finish(i, tag, mixed))
        return done

    def _finish(self, i: int, tag: Any, frame: Tensor) -> Finished:
        assert i == self._emitted, f"frame {i} finished out of order (expected {self._emitted})"
        self._emitted += 1
        if self.out_dtype is not None and frame.dtype != self.out_dtype:
            frame = frame.to(self.out_dtype)
        return Finished(i, i if tag is None else tag, frame)


def run_chunked(
    run_chunk: Callable[[Tensor], Tensor],
    frames: Tensor | Iterable[Tensor],
    chunk: int = DEFAULT_CHUNK,
    overlap: int = DEFAULT_OVERLAP,
    cuts: Sequence[int] = (),
    full_last: bool = True,
) -> Tensor:
    """Offline helper: run a whole (N, C, H, W) clip through :class:`StreamingChunker`."""
    sc = StreamingChunker(run_chunk, chunk, overlap, full_last)
    cut_set = set(cuts)
    out = []
    for i, f in enumerate(frames):
        out += sc.push(f, cut=i in cut_set)
    out += sc.finish()
    return torch.stack([f.frame for f in out])


# ----------------------------------------------------------------------------- memory plans


@dataclass(frozen=True)
class Plan:
    """How one chunk goes through the network.

    ``tile``: tile side in LR pixels (0 = whole frames). ``batch``: frames per network call for a
    model without temporal blocks (a temporal model always takes its whole chunk at once).
    """

    tile: int = 0
    batch: int = DEFAULT_CHUNK

    def describe(self) -> str:
        return f"tile {self.tile or 'off'}, batch {self.batch}"


def smaller_plan(plan: Plan, floor: Plan, frame_hw: tuple[int, int] | None = None) -> Plan | None:
    """The next plan to try after an out-of-memory error, or None at the floor.

    The batch is halved first (free: outputs do not change), then the tile side (rounded down to a
    multiple of 16, not below ``floor.tile``, or ``MIN_TILE`` when that is 0). From untiled, or from
    a tile larger than the frame, the next tile is half the padded frame's longer side; that needs
    ``frame_hw``. For a temporal model the batch means nothing: give ``floor.batch == plan.batch``
    so that no retry is spent on it.
    """
    if plan.batch > floor.batch:
        return replace(plan, batch=max(floor.batch, plan.batch // 2))
    min_tile = floor.tile or MIN_TILE
    current = plan.tile
    if frame_hw is not None:
        # a tile larger than the frame is the whole frame: halve from the frame's side
        side = max(padded_size(*frame_hw))
        current = side if current == 0 else min(current, side)
    elif current == 0:
        return None
    nxt = max(min_tile, 16 * ((current // 2) // 16))
    if nxt >= current:
        return None
    return replace(plan, tile=nxt)


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is a device out-of-memory error (CUDA, or a backend that says so)."""
    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(e, oom_type):
        return True
    if not isinstance(e, RuntimeError):
        return False
    msg = str(e).lower()
    # CUDA, HIP and MPS say "out of memory"; cuBLAS/cuDNN report a failed workspace allocation.
    return "out of memory" in msg or "alloc_failed" in msg


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_with_backoff(
    run: Callable[[Plan], T],
    plan: Plan,
    floor: Plan,
    frame_hw: tuple[int, int] | None = None,
    is_oom: Callable[[BaseException], bool] = is_out_of_memory,
    what: str = "this chunk",
) -> tuple[T, Plan, list[str]]:
    """Run ``run(plan)``; on out-of-memory retry the *same* work with a smaller plan.

    Returns the result, the plan that worked (keep it for the rest of the file) and one line per
    change made. At the floor raises :class:`OutOfMemory` naming ``what`` and the plan. ``run``
    must not have emitted anything when it fails (it returns its output), so no frame is ever
    dropped or written twice.
    """
    changes: list[str] = []
    while True:
        failed: str | None = None
        try:
            return run(plan), plan, changes
        except RuntimeError as e:  # torch.OutOfMemoryError and the backends' OOM are RuntimeErrors
            if not is_oom(e):
                raise
            failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
        # Outside the except block: the traceback (and the tensors its frames hold) is gone.
        _release_memory()
        nxt = smaller_plan(plan, floor, frame_hw)
        if nxt is None:
            raise OutOfMemory(
                f"out of memory on {what} even at {plan.describe()} ({failed}); use a smaller "
                "--tile or --chunk, --precision fp16/bf16, or another device"
            )
        changes.append(f"out of memory at {plan.describe()}: retrying with {nxt.describe()}")
        plan = nxt


class BackoffRunner:
    """Keeps the current :class:`Plan` across chunks: call it with the work of each chunk.

    ``runner(work)`` runs ``work(plan)`` through :func:`run_with_backoff`; a plan shrunk for one
    chunk stays shrunk for the rest of the file. ``changes`` collects every change for the report;
    ``on_change`` (optional) is called with each line as it happens.
    """

    def __init__(
        self,
        plan: Plan,
        floor: Plan,
        frame_hw: tuple[int, int] | None = None,
        on_change: Callable[[str], None] | None = None,
        what: str = "this chunk",
        is_oom: Callable[[BaseException], bool] = is_out_of_memory,
    ) -> None:
        self.plan = plan
        self.floor = floor
        self.frame_hw = frame_hw
        self.on_change = on_change
        self.what = what
        self.is_oom = is_oom
        self.changes: list[str] = []

    def __call__(self, work: Callable[[Plan], T]) -> T:
        result, self.plan, changes = run_with_backoff(
            work, self.plan, self.floor, self.frame_hw, self.is_oom, self.what
        )
        for line in changes:
            self.changes.append(line)
            if self.on_change is not None:
                self.on_change(line)
        return result


def pad_frames(x: Tensor, n: int) -> Tensor:
    """(T, C, H, W) -> (max(T, n), C, H, W), the last frame repeated: a compiled network then
    sees one clip length and one batch for the whole file (the caller crops the output)."""
    if x.shape[0] >= n:
        return x
    return torch.cat([x, x[-1:].expand(n - x.shape[0], *x.shape[1:])])


def run_chunk_plan(
    fn: Callable[[Tensor, int], Tensor],
    x: Tensor,
    plan: Plan,
    temporal: bool,
    tile_overlap: int,
    scale: int = 4,
    multiple: int = 16,
    pad_mode: str = "replicate",
    weights: TileWeights | None = None,
    static: int = 0,
) -> Tensor:
    """One chunk (T, C, H, W) through ``fn(frames, clip_len)`` (e.g. ``model.forward``) per plan.

    A temporal model gets the whole chunk as one clip (tiles cut space, never time); an image
    model gets batches of ``plan.batch`` frames, each its own clip of length 1. ``weights``
    keeps the tile blending weights on the device across chunks. ``static`` (for a compiled
    network): pad a temporal clip to ``static`` frames, an image model's tail batch to
    ``plan.batch``, and crop the output, so that every call of a file has the same shape. For
    an image model that changes nothing; a temporal model's last frames then see repeated
    frames instead of the clip's end.
    """
    weights = weights if weights is not None else TileWeights()
    n = x.shape[0]
    if static and temporal:
        x = pad_frames(x, static)
    elif static:  # tail batches to the plan's batch
        x = pad_frames(x, -(-n // plan.batch) * plan.batch)
    return _run_chunk_plan(fn, x, plan, temporal, tile_overlap, scale, multiple, pad_mode, weights)[
        :n
    ]


def _run_chunk_plan(
    fn: Callable[[Tensor, int], Tensor],
    x: Tensor,
    plan: Plan,
    temporal: bool,
    tile_overlap: int,
    scale: int,
    multiple: int,
    pad_mode: str,
    weights: TileWeights,
) -> Tensor:
    if temporal:
        t = x.shape[0]
        return run_tiled(
            lambda p: fn(p, t), x, plan.tile, tile_overlap, scale, multiple, pad_mode, None, weights
        )
    outs = [
        run_tiled(
            lambda p: fn(p, 1),
            x[i : i + plan.batch],
            plan.tile,
            tile_overlap,
            scale,
            multiple,
            pad_mode,
            None,
            weights,
        )
        for i in range(0, x.shape[0], plan.batch)
    ]
    return outs[0] if len(outs) == 1 else torch.cat(outs)
