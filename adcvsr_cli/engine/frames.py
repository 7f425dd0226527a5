"""Frames between the media layer and the device: uint8/uint16 (H, W, 3) arrays <-> (3, H, W)
float tensors in [-1, 1]."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(arr: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 or uint16 -> (3, H, W) float32 in [-1, 1] on ``device`` (converted there)."""
    if arr.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(arr))
        scale = 255.0
    elif arr.dtype == np.uint16:
        # torch's uint16 support is thin: carry the bits as int16 and unwrap on the device.
        t = torch.from_numpy(np.ascontiguousarray(arr).view(np.int16))
        scale = 65535.0
    else:
        raise TypeError(f"frames must be uint8 or uint16, got {arr.dtype}")
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    t = t.to(device)
    if arr.dtype == np.uint16:
        t = t.to(torch.int32) & 0xFFFF
    return t.permute(2, 0, 1).float().mul_(2.0 / scale).sub_(1.0)


def to_array(sr: torch.Tensor, deep: bool) -> np.ndarray:
    """(3, H, W) roughly in [-1, 1] -> rounded (H, W, 3) uint8 (or uint16 when ``deep``)."""
    maxval = 65535.0 if deep else 255.0
    q = ((sr.float() + 1.0) * (maxval / 2.0)).clamp_(0.0, maxval).round_()
    a = q.permute(1, 2, 0).to(torch.int32 if deep else torch.uint8).cpu().numpy()
    return a.astype(np.uint16) if deep else np.ascontiguousarray(a)
