"""The bicubic reference set beside the network: in the preview, the A/B video and the meter.

One resize for all three, so that "bicubic" means the same pixels wherever the tool shows it.
It is the resize the pipeline itself uses to reach an asked output size (bicubic, antialiased
when shrinking, half-pixel centres), run on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def bicubic(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 or uint16 -> (height, width, 3) of the same dtype, bicubic, rounded."""
    if rgb.ndim != 3 or rgb.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"expected an (H, W, 3) uint8 or uint16 frame, got {rgb.dtype} {rgb.shape}")
    if rgb.shape[:2] == (height, width):
        return rgb.copy()
    maxval = 255.0 if rgb.dtype == np.uint8 else 65535.0
    x = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        y = F.interpolate(
            x, size=(height, width), mode="bicubic", antialias=True, align_corners=False
        )
        y = y[0].permute(1, 2, 0).clamp_(0.0, maxval).round_()
    return y.numpy().astype(rgb.dtype)
