"""Colour fix: match the output's per-channel statistics to the low-resolution input.

``adain`` is the reference rule, per image and per channel, statistics over H and W with the
unbiased standard deviation::

    sr = (sr - mean(sr)) / std(sr) * std(lr) + mean(lr)        # sr, lr in [-1, 1]

Applied frame by frame to video it can flicker: each frame's correction follows that frame's LR
statistics, which jump with compression, noise and brightness flicker even when the network's
output is steady. ``adain-temporal`` smooths the per-frame statistics of *both* sr and lr along
time with the same causal exponential moving average (reset at every scene cut) and applies the
rule with the smoothed values. The correction (a per-channel gain and shift) then varies slowly,
so the fix itself cannot flicker; and because sr and lr statistics are smoothed by the same filter,
the lag cancels: a constant colour bias of the network is still removed exactly.

:func:`flicker` measures the mean absolute frame-to-frame change of the per-frame channel means.
This module imports only torch, numpy and the standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

COLOR_FIX_MODES = ("none", "adain", "adain-temporal")
# Chosen by measurement (benchmarks/colorfix_flicker.py, the seven dove-demo clips, 25 frames,
# 64x64 LR crops, the parity fixture's weights): per-frame adain keeps the output's frame-to-frame
# change of channel means and stds at 0.90-1.05x the input's on every clip; adain-temporal lets
# the network's own contrast flicker through (up to 1.67x) and damps real light changes (0.48x).
DEFAULT_COLOR_FIX = "adain"
# EMA weight of the newest frame: a time constant of about 10 frames (0.4 s at 25 fps).
DEFAULT_ALPHA = 0.1
# Guards the division on a flat (constant) output frame; far below any real frame's std.
STD_EPS = 1e-6


# Pixels per block of the two-pass spread on the CPU (see :func:`channel_stats`).
_STATS_BLOCK = 65536


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per image and channel mean and unbiased std over H and W: (N, C, H, W) -> 2 x (N, C).

    Computed in float32 at least (half-precision sums over megapixels lose digits).
    """
    if x.dim() != 4:
        raise ValueError(f"expected (N, C, H, W), got {tuple(x.shape)}")
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
    # One pixel has no unbiased spread (0/0): its std is 0, and the fix maps to the lr mean.
    correction = 1 if x.shape[-2] * x.shape[-1] > 1 else 0
    if xf.device.type != "cpu":
        var, mean = torch.var_mean(xf, dim=(-2, -1), correction=correction)
        return mean, var.sqrt()
    return _two_pass_stats(xf, correction)


def _two_pass_stats(x: Tensor, correction: int) -> tuple[Tensor, Tensor]:
    """:func:`channel_stats` on the CPU: the mean, then the spread around it, block by block.

    torch's one-pass ``var_mean`` is about 10x slower here (one thread, 2 x 3416x1920 frames:
    250-315 ms against 18-27 ms); the blocks keep the temporary in cache, torch's float32 sum
    (pairwise) adds each block's squares, and the blocks' sums add up in float64: the variance
    within 4e-8 relative of a float64 reference, also for 8-bit levels (var_mean's: 3e-8).
    """
    flat = x.flatten(2)
    n = flat.shape[-1]
    mean = flat.mean(-1)
    centre = mean[..., None]
    squares = torch.zeros(mean.shape, dtype=torch.float64)
    for i in range(0, n, _STATS_BLOCK):
        d = flat[..., i : i + _STATS_BLOCK] - centre
        squares += (d * d).sum(-1).double()
    std = (squares / max(n - correction, 1)).sqrt().to(x.dtype)
    return mean, std


def apply_stats(
    sr: Tensor, sr_mean: Tensor, sr_std: Tensor, lr_mean: Tensor, lr_std: Tensor
) -> Tensor:
    """``(sr - sr_mean) / sr_std * lr_std + lr_mean`` with (N, C) statistics; keeps sr's dtype."""
    gain = lr_std / sr_std.clamp_min(STD_EPS)
    shift = lr_mean - sr_mean * gain
    work = sr if sr.dtype in (torch.float32, torch.float64) else sr.float()
    out = work * gain[..., None, None].to(work.dtype) + shift[..., None, None].to(work.dtype)
    return out.to(sr.dtype)


LRStats = tuple[Tensor, Tensor]  # per frame and channel mean and std of the LR frames, 2 x (N, C)


def _check_pair(sr: Tensor, lr: Tensor | LRStats) -> None:
    n_c = tuple(lr[0].shape) if isinstance(lr, tuple) else tuple(lr.shape[:2])
    if sr.dim() != 4 or (not isinstance(lr, tuple) and lr.dim() != 4) or tuple(sr.shape[:2]) != n_c:
        shape = [tuple(t.shape) for t in lr] if isinstance(lr, tuple) else tuple(lr.shape)
        raise ValueError(
            f"colour fix needs sr as (N, C, h, w) and lr as (N, C, H, W) or its statistics, "
            f"with the same N and C, got {tuple(sr.shape)} and {shape}"
        )


def lr_stats(lr: Tensor | LRStats, device: torch.device) -> LRStats:
    """The LR statistics on ``device``: computed from frames, or given (the engine computes them
    once per chunk when the frames reach the device)."""
    mean, std = lr if isinstance(lr, tuple) else channel_stats(lr)
    return mean.to(device), std.to(device)


def adain(sr: Tensor, lr: Tensor | LRStats) -> Tensor:
    """Reference per-frame colour fix: (N, C, h, w) sr against (N, C, H, W) lr, both in [-1, 1]
    (or lr's :func:`channel_stats`).

    Returns the fixed sr, not clamped (the caller clamps when it converts to pixels).
    """
    _check_pair(sr, lr)
    sm, ss = channel_stats(sr)
    lm, ls = lr_stats(lr, sm.device)
    return apply_stats(sr, sm, ss, lm, ls)


class TemporalColorFix:
    """Streaming ``adain-temporal``: feed consecutive frames in order, any number at a time.

    The statistics (mean and std of sr and of lr, per channel) are smoothed with an exponential
    moving average of weight ``alpha``; after a reset the first frames use the running average of
    the frames so far (weight ``max(alpha, 1/k)`` for the k-th frame), so a shot's first frame uses
    its own statistics. :meth:`reset` (or ``cuts``) restarts the average: statistics never cross a
    scene cut. State is a few numbers per channel; no frames are held.
    """

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self.alpha = alpha
        self.reset()

    def reset(self) -> None:
        """Forget the history (a new shot starts with the next frame)."""
        self._k = 0
        self._state: Tensor | None = None  # (4, C): sr mean, sr std, lr mean, lr std

    def smoothed_stats(
        self, sr: Tensor, lr: Tensor | LRStats, cuts: Sequence[bool] | None = None
    ) -> Tensor:
        """Advance over the frames and return their smoothed statistics, (N, 4, C) float64 on
        sr's device (the average runs there: nothing is read back to the host)."""
        _check_pair(sr, lr)
        sm, ss = channel_stats(sr)
        lm, ls = lr_stats(lr, sm.device)
        per_frame = torch.stack([sm, ss, lm, ls], dim=1).double()  # (N, 4, C)
        if cuts is not None and len(cuts) != sr.shape[0]:
            raise ValueError(f"cuts has {len(cuts)} flags for {sr.shape[0]} frames")
        rows = []
        for i in range(per_frame.shape[0]):
            if cuts is not None and cuts[i]:
                self.reset()
            self._k += 1
            a = max(self.alpha, 1.0 / self._k)
            if self._state is None:
                self._state = per_frame[i].clone()
            else:
                self._state = self._state.to(per_frame.device)
                self._state = self._state + a * (per_frame[i] - self._state)
            rows.append(self._state)
        return torch.stack(rows)

    def __call__(
        self, sr: Tensor, lr: Tensor | LRStats, cuts: Sequence[bool] | None = None
    ) -> Tensor:
        """Fix consecutive frames (N, C, h, w) against their LR frames (or their statistics);
        ``cuts[i]``: a new shot starts at frame i of this batch."""
        st = self.smoothed_stats(sr, lr, cuts)
        return apply_stats(sr, st[:, 0], st[:, 1], st[:, 2], st[:, 3])


def adain_temporal(
    sr: Tensor, lr: Tensor, cuts: Sequence[int] = (), alpha: float = DEFAULT_ALPHA
) -> Tensor:
    """``adain-temporal`` over a whole clip; ``cuts`` are frame indices where a new shot starts."""
    cut_set = set(cuts)
    return TemporalColorFix(alpha)(sr, lr, [i in cut_set for i in range(sr.shape[0])])


ColorFix = Callable[[Tensor, "Tensor | LRStats", "Sequence[bool] | None"], Tensor]


def _no_fix(sr: Tensor, lr: Tensor | LRStats, cuts: Sequence[bool] | None = None) -> Tensor:
    return sr


def _per_frame_fix(sr: Tensor, lr: Tensor | LRStats, cuts: Sequence[bool] | None = None) -> Tensor:
    return adain(sr, lr)


def make_color_fix(mode: str, alpha: float = DEFAULT_ALPHA) -> ColorFix:
    """A streaming colour fix for ``--color-fix MODE``: ``fix(sr, lr, cuts=None) -> sr``, where
    ``lr`` is the LR frames or their :func:`channel_stats`.

    Call it on consecutive frames in order (``cuts[i]``: a new shot starts at frame i of the call).
    Raises ValueError naming the valid modes for an unknown one.
    """
    if mode == "none":
        return _no_fix
    if mode == "adain":
        return _per_frame_fix
    if mode == "adain-temporal":
        return TemporalColorFix(alpha)
    raise ValueError(f"colour fix {mode!r} is not one of {', '.join(COLOR_FIX_MODES)}")


def channel_means(frames: Tensor | np.ndarray, channel_axis: int = 1) -> Tensor:
    """Per-frame channel means (T, C) in float64 of frames with time on axis 0."""
    t = torch.as_tensor(frames)
    if t.dim() < 2:
        raise ValueError(f"expected frames with a time and a channel axis, got {tuple(t.shape)}")
    ca = channel_axis % t.dim()
    if ca == 0:
        raise ValueError("the channel axis cannot be the time axis 0")
    t = t.movedim(ca, 1).to(torch.float64)
    return t.reshape(t.shape[0], t.shape[1], -1).mean(dim=-1)


def flicker(frames: Tensor | np.ndarray, channel_axis: int = 1, cuts: Sequence[int] = ()) -> float:
    """Mean absolute frame-to-frame change of the per-frame channel means.

    ``frames``: time on axis 0, channels on ``channel_axis`` (1 for (T, C, H, W) tensors, -1 for
    (T, H, W, C) arrays as PyAV gives them). The value is in the frames' own units, so compare
    output and input in the same range. Changes into a frame listed in ``cuts`` (a new shot) are
    not flicker and are left out. Fewer than two frames: 0.0.
    """
    m = channel_means(frames, channel_axis)
    d = (m[1:] - m[:-1]).abs().mean(dim=1)  # (T-1,): change into frame i+1
    keep = torch.ones(d.shape[0], dtype=torch.bool)
    for c in cuts:
        if 1 <= c <= d.shape[0]:
            keep[c - 1] = False
    d = d[keep]
    return float(d.mean()) if d.numel() else 0.0
