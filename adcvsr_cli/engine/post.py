"""Post-processing per chunk, on the device: colour fix, resize to the asked size, quantise,
then one copy to the host.

:class:`Post` takes the finished frames of a chunk together (N, 3, 4H, 4W) with the statistics of
their LR frames and the scene-cut flags, and returns a :class:`~.frames.HostCopy` of the rounded
(N, out_h, out_w, 3) frames: the host only waits for it when it hands the frames to the encoder,
by which time the next chunk is queued on the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .colorfix import LRStats, make_color_fix
from .frames import HostCopy, host_arrays, quantise


class Post:
    """Colour fix ``color_fix``, resize to ``size`` = (out_w, out_h), quantise to uint8 (uint16
    when ``deep``); one instance per file (the temporal colour fix keeps its state)."""

    def __init__(self, color_fix: str, size: tuple[int, int], deep: bool) -> None:
        self.fix = make_color_fix(color_fix)
        self.size = size
        self.deep = deep
        self._stream: torch.cuda.Stream | None = None

    def __call__(self, sr: Tensor, lr: LRStats, cuts: Sequence[bool]) -> HostCopy:
        """(N, 3, h, w) float frames on the device -> their host copy, under way."""
        with torch.inference_mode():
            y = self.fix(sr, lr, cuts)
            ow, oh = self.size
            if y.shape[-2:] != (oh, ow):
                y = F.interpolate(
                    y, size=(oh, ow), mode="bicubic", antialias=True, align_corners=False
                )
            q = quantise(y, self.deep)
        if q.device.type == "cuda" and self._stream is None:
            self._stream = torch.cuda.Stream(q.device)
        return HostCopy(q, self._stream)

    @staticmethod
    def arrays(copy: HostCopy) -> list[np.ndarray]:
        """The frames of a finished copy, (out_h, out_w, 3) uint8/uint16 each."""
        return host_arrays(copy.wait())
