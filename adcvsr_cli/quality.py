"""The flicker meter: temporal consistency of an upscaled video, without ground truth.

For each pair of consecutive frames ``t, t+1`` the warping error is the mean squared RGB
difference (values in [0, 1], averaged over channels) between output frame ``t`` and output frame
``t+1`` warped back onto it, over the pixels where the motion is trustworthy. It is the E*warp of
the video super-resolution literature, reported x10^-3 like the papers do.

The motion comes from the *input*, upscaled with bicubic to the output size, never from the
output: a network that smears detail to look stable, or invents texture that swims, cannot steer
the flow it is judged by. Pixels whose forward and backward flows disagree (occlusions,
disocclusions, flow failures) and pixels that move out of the frame are left out, the usual
forward-backward consistency test (Sundaram et al., ECCV 2010).

The same figure for the bicubic upscale of the input is the baseline: a network output at or
below it adds no flicker of its own. Pairs across a scene cut are not measured (no motion
connects them). Chunk seams (where the run cross-fades one temporal chunk into the next) and tile
seams (the feathered bands between spatial tiles) come from the plan the run would use, so that
a jump at a seam can be told from flicker everywhere.

Optical flow: OpenCV's DIS (Kroeger et al., ECCV 2016), medium preset. It is deterministic, runs
on the CPU at video sizes in tens of milliseconds, needs no learned weights (RAFT's cannot be
fetched offline) and ships in a maintained wheel (``opencv-python-headless``, the ``quality``
extra), imported only when the meter runs.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .engine.chunking import plan_chunks
from .engine.tiling import padded_size, plan_tiles
from .errors import UsageError, VideoError
from .frames import read_frames
from .reference import bicubic

EWARP_UNIT = 1e3  # reported x10^-3, like the papers' E*warp
FLOW_NAME = "opencv-dis-medium"
# Forward-backward consistency (Sundaram et al. 2010): |f + b'|^2 <= A (|f|^2 + |b'|^2) + B.
CONSISTENCY_A = 0.01
CONSISTENCY_B = 0.5
LARGEST_SEAMS = 3

ProgressFn = Callable[[int, int | None], None]


def load_cv2() -> Any:
    """The ``cv2`` module, or a UsageError that says how to install it."""
    try:
        import cv2
    except ImportError as e:
        raise UsageError(
            "adcvsr quality needs OpenCV for optical flow: pip install 'adcvsr[quality]' "
            "(or pip install opencv-python-headless)"
        ) from e
    return cv2


# ----------------------------------------------------------------------------- flow and warping


class Flow:
    """Dense optical flow between two grayscale uint8 frames (OpenCV DIS, medium preset)."""

    def __init__(self) -> None:
        self.cv2 = load_cv2()
        self._dis = self.cv2.DISOpticalFlow_create(self.cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(H, W, 2) float32: where each pixel of ``a`` is in ``b`` (x, y offsets)."""
        return self._dis.calc(a, b, None)


def gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8/uint16 -> (H, W) uint8 luma (BT.601 weights), what the flow looks at."""
    x = rgb.astype(np.float32)
    if rgb.dtype == np.uint16:
        x /= 257.0
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def unit(rgb: np.ndarray) -> np.ndarray:
    """uint8/uint16 RGB -> float32 in [0, 1]."""
    return rgb.astype(np.float32) / (255.0 if rgb.dtype == np.uint8 else 65535.0)


@dataclass
class Motion:
    """The flow from frame t to t+1 as remap coordinates, and where it can be trusted."""

    map_x: np.ndarray
    map_y: np.ndarray
    valid: np.ndarray  # (H, W) bool: consistent forward-backward and inside the frame

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean())


def motion(cv2: Any, fwd: np.ndarray, bwd: np.ndarray) -> Motion:
    """Remap coordinates from the forward flow, masked by forward-backward consistency."""
    h, w = fwd.shape[:2]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = gx + fwd[..., 0]
    map_y = gy + fwd[..., 1]
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    bwd_at = cv2.remap(bwd, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    d = fwd + bwd_at
    lhs = (d * d).sum(-1)
    rhs = CONSISTENCY_A * ((fwd * fwd).sum(-1) + (bwd_at * bwd_at).sum(-1)) + CONSISTENCY_B
    return Motion(map_x, map_y, inside & (lhs <= rhs))


def error_map(cv2: Any, a: np.ndarray, b: np.ndarray, m: Motion) -> np.ndarray:
    """(H, W) float32: squared difference of ``a`` and ``b`` warped onto it, channel mean."""
    warped = cv2.remap(b, m.map_x, m.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    d = a - warped
    return (d * d).mean(-1)


def masked_mean(err: np.ndarray, mask: np.ndarray) -> float | None:
    n = int(mask.sum())
    return float(err[mask].sum() / n) if n else None


# ----------------------------------------------------------------------------- seams from the plan


@dataclass(frozen=True)
class SeamPlan:
    """Where the run's seams are: chunk-seam pairs (index t = pair t, t+1) and tile bands."""

    chunk: int
    chunk_overlap: int
    tile: int
    tile_overlap: int
    seam_pairs: frozenset[int]
    band_rows: tuple[tuple[int, int], ...]  # output rows [a, b) inside tile overlaps
    band_cols: tuple[tuple[int, int], ...]


def chunk_seam_pairs(n_frames: int, chunk: int, overlap: int, cuts: Sequence[int]) -> set[int]:
    """Pairs (t, t+1) over which the run hands over from one temporal chunk to the next.

    Over a cross-fade of ``k`` frames ending at the earlier chunk's end ``e``, the output moves
    from one chunk to the other between frames ``e-k-1`` and ``e``; at a scene cut chunks only
    abut and nothing is handed over.
    """
    chunks = plan_chunks(n_frames, chunk, overlap, cuts)
    pairs: set[int] = set()
    for prev, cur in zip(chunks, chunks[1:], strict=False):
        if cur.start in cuts and cur.start >= prev.end:
            continue
        k = min(overlap, max(0, prev.end - cur.start))
        first = prev.end - k - 1
        pairs.update(t for t in range(max(0, first), prev.end) if t < n_frames - 1)
    return pairs


def tile_bands(
    lr_hw: tuple[int, int], out_hw: tuple[int, int], tile: int, overlap: int
) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """Output rows and columns inside the overlaps of neighbouring tiles, as [a, b) spans."""
    if tile == 0:
        return (), ()
    h, w = lr_hw
    tiles = plan_tiles(h, w, tile, overlap)
    ph, pw = padded_size(h, w)

    def bands(
        spans: set[tuple[int, int]], lr_len: int, out_len: int
    ) -> tuple[tuple[int, int], ...]:
        ordered = sorted(spans)
        s = out_len / lr_len  # network scale and any resize to the asked size
        out = []
        for (a0, n0), (a1, _) in zip(ordered, ordered[1:], strict=False):
            lo, hi = a1, min(a0 + n0, lr_len)
            if hi > lo:
                out.append((int(math.floor(lo * s)), min(out_len, int(math.ceil(hi * s)))))
        return tuple(out)

    rows = bands({(t.y0, t.h) for t in tiles}, h, out_hw[0]) if ph > 0 else ()
    cols = bands({(t.x0, t.w) for t in tiles}, w, out_hw[1]) if pw > 0 else ()
    return rows, cols


# ----------------------------------------------------------------------------- the report


@dataclass
class QualityReport:
    """What :func:`measure` found. ``per_frame[t]`` is the pair (t, t+1), x10^-3 (None: a scene
    cut or no trustworthy motion)."""

    input: str
    output: str
    frames: int
    width: int
    height: int
    flow: str
    ewarp: float | None
    ewarp_bicubic: float | None
    per_frame: list[float | None]
    per_frame_bicubic: list[float | None]
    pairs_measured: int
    valid_fraction: float
    scene_cuts: list[int]
    plan: dict[str, int]
    chunk_seams: dict[str, Any] = field(default_factory=dict)
    tile_seams: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(xs: Iterable[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return float(sum(v) / len(v)) if v else None


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def chunk_seam_summary(per_frame: Sequence[float | None], seams: frozenset[int]) -> dict[str, Any]:
    """The largest errors at chunk seams against the errors inside chunks."""
    at = [(t, e) for t, e in enumerate(per_frame) if e is not None and t in seams]
    inside = [e for t, e in enumerate(per_frame) if e is not None and t not in seams]
    largest = sorted(at, key=lambda te: te[1], reverse=True)[:LARGEST_SEAMS]
    seam_mean = _mean(e for _, e in at)
    inside_mean = _mean(inside)
    return {
        "pairs": sorted(seams),
        "largest": [{"frame": t, "ewarp": _r(e)} for t, e in largest],
        "seam_mean": _r(seam_mean),
        "inside_mean": _r(inside_mean),
        "inside_median": _r(statistics.median(inside)) if inside else None,
        "inside_max": _r(max(inside)) if inside else None,
        "seam_to_inside": _r(seam_mean / inside_mean, 3)
        if seam_mean is not None and inside_mean
        else None,
    }


# ----------------------------------------------------------------------------- measuring


@dataclass
class _Sums:
    band: float = 0.0
    band_n: int = 0
    rest: float = 0.0
    rest_n: int = 0

    def add(self, err: np.ndarray, valid: np.ndarray, band: np.ndarray) -> None:
        b, r = valid & band, valid & ~band
        self.band += float(err[b].sum())
        self.band_n += int(b.sum())
        self.rest += float(err[r].sum())
        self.rest_n += int(r.sum())

    def summary(self, plan: SeamPlan) -> dict[str, Any]:
        seam = self.band / self.band_n * EWARP_UNIT if self.band_n else None
        inner = self.rest / self.rest_n * EWARP_UNIT if self.rest_n else None
        return {
            "rows": [list(s) for s in plan.band_rows],
            "cols": [list(s) for s in plan.band_cols],
            "seam_ewarp": _r(seam),
            "interior_ewarp": _r(inner),
            "seam_to_interior": _r(seam / inner, 3) if seam is not None and inner else None,
        }


def paired_frames(src: str, dst: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(input, output) RGB frames in step; a VideoError when the counts differ."""
    a, b = read_frames(src), read_frames(dst)
    n = 0
    for fa in a:
        fb = next(b, None)
        if fb is None:
            rest = n + 1 + sum(1 for _ in a)
            raise VideoError(f"{dst}: has {n} frames but {src} has {rest}: not an upscale of it")
        n += 1
        yield fa.rgb, fb.rgb
    extra = sum(1 for _ in b)
    if extra:
        raise VideoError(f"{dst}: has {n + extra} frames but {src} has {n}: not an upscale of it")


class _Meter:
    """Pair by pair state of :func:`measure`: one previous frame, running sums, no frame history."""

    def __init__(self, tile: int, tile_overlap: int, scene_split: bool) -> None:
        from .engine.scenes import SceneDetector

        self.flow = Flow()
        self.cv2 = self.flow.cv2
        self.detector = SceneDetector() if scene_split else None
        self.tile, self.tile_overlap = tile, tile_overlap
        self.per: list[float | None] = []
        self.per_bic: list[float | None] = []
        self.cuts: list[int] = []
        self.valid_sum = 0.0
        self.valid_pairs = 0
        self.sums = _Sums()
        self.prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.lr_hw = self.out_hw = (0, 0)
        self.bands: tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]] = ((), ())
        self.band = np.zeros((0, 0), bool)
        self.frames = 0

    def start(self, lr: np.ndarray, out: np.ndarray) -> None:
        self.lr_hw, self.out_hw = lr.shape[:2], out.shape[:2]
        self.bands = tile_bands(self.lr_hw, self.out_hw, self.tile, self.tile_overlap)
        rows, cols = self.bands
        self.band = np.zeros(self.out_hw, dtype=bool)
        for a, b in rows:
            self.band[a:b, :] = True
        for a, b in cols:
            self.band[:, a:b] = True

    def feed(self, lr: np.ndarray, out: np.ndarray, name: str) -> None:
        i = self.frames
        if i == 0:
            self.start(lr, out)
        elif out.shape[:2] != self.out_hw:
            raise VideoError(f"{name}: frame {i} is {out.shape[1]}x{out.shape[0]}, unlike frame 0")
        bic = bicubic(lr, self.out_hw[1], self.out_hw[0])
        cur = (gray(bic), unit(bic), unit(out))
        cut = self.detector is not None and bool(self.detector.feed(_lr_tensor(lr)))
        if cut:
            self.cuts.append(i)
        if self.prev is not None:
            self.pair(self.prev, cur, cut)
        self.prev = cur
        self.frames += 1

    def pair(self, prev: tuple[np.ndarray, ...], cur: tuple[np.ndarray, ...], cut: bool) -> None:
        if cut:  # no motion connects two shots
            self.per.append(None)
            self.per_bic.append(None)
            return
        cv2 = self.cv2
        m = motion(cv2, self.flow(prev[0], cur[0]), self.flow(cur[0], prev[0]))
        e_out = error_map(cv2, prev[2], cur[2], m)
        e_bic = error_map(cv2, prev[1], cur[1], m)
        self.per.append(_scaled(masked_mean(e_out, m.valid)))
        self.per_bic.append(_scaled(masked_mean(e_bic, m.valid)))
        self.sums.add(e_out, m.valid, self.band)
        self.valid_sum += m.valid_fraction
        self.valid_pairs += 1

    def report(self, src: str, dst: str, chunk: int, chunk_overlap: int) -> QualityReport:
        seams = frozenset(chunk_seam_pairs(self.frames, chunk, chunk_overlap, self.cuts))
        plan = SeamPlan(chunk, chunk_overlap, self.tile, self.tile_overlap, seams, *self.bands)
        per = self.per
        return QualityReport(
            input=src,
            output=dst,
            frames=self.frames,
            width=int(self.out_hw[1]),
            height=int(self.out_hw[0]),
            flow=FLOW_NAME,
            ewarp=_r(_mean(per)),
            ewarp_bicubic=_r(_mean(self.per_bic)),
            per_frame=[_r(x) for x in per],
            per_frame_bicubic=[_r(x) for x in self.per_bic],
            pairs_measured=sum(x is not None for x in per),
            valid_fraction=round(self.valid_sum / self.valid_pairs, 4) if self.valid_pairs else 0.0,
            scene_cuts=list(self.cuts),
            plan={
                "chunk": chunk,
                "chunk_overlap": chunk_overlap,
                "tile": self.tile,
                "tile_overlap": self.tile_overlap,
            },
            chunk_seams=chunk_seam_summary(per, seams),
            tile_seams=self.sums.summary(plan),
        )


def measure(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    chunk: int,
    chunk_overlap: int,
    tile: int,
    tile_overlap: int,
    scene_split: bool = True,
    on_progress: ProgressFn | None = None,
    frames_hint: int | None = None,
) -> QualityReport:
    """Measure the flicker of ``dst`` (an upscale of ``src``) and of the bicubic upscale of ``src``.

    ``chunk``, ``chunk_overlap``, ``tile`` (0: whole frames) and ``tile_overlap`` describe the
    plan of the run (as ``adcvsr upscale --dry-run`` prints it); they place the seams. Raises
    :class:`VideoError` when a file is unreadable or ``dst`` has another frame count, and
    :class:`UsageError` when OpenCV is missing.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    meter = _Meter(tile, tile_overlap, scene_split)
    for lr, out in paired_frames(src, dst):
        meter.feed(lr, out, dst)
        if on_progress is not None:
            on_progress(meter.frames, frames_hint)
    if meter.frames < 2:
        raise VideoError(f"{dst}: {meter.frames} frame(s): flicker needs at least two")
    return meter.report(src, dst, chunk, chunk_overlap)


def _scaled(x: float | None) -> float | None:
    return None if x is None else x * EWARP_UNIT


def _lr_tensor(rgb: np.ndarray) -> Any:
    import torch

    from .engine.frames import to_tensor

    return to_tensor(rgb, torch.device("cpu"))
