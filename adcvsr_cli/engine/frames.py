"""Frames between the media layer and the device: uint8/uint16 (H, W, 3) arrays <-> (3, H, W)
float tensors in [-1, 1]. Per frame (:func:`to_tensor`, :func:`to_array`) for single images and
tests; per chunk (:func:`upload_chunk`, :func:`quantise`, :class:`HostCopy`) in the engine, so
that a chunk crosses between host and device once each way."""

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


def host_frame(arr: np.ndarray) -> torch.Tensor:
    """A decoded (H, W, 3) uint8 or uint16 array as a host tensor, without a copy (uint16 bits
    travel as int16: torch's uint16 support is thin)."""
    if arr.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(arr))
    if arr.dtype == np.uint16:
        return torch.from_numpy(np.ascontiguousarray(arr).view(np.int16))
    raise TypeError(f"frames must be uint8 or uint16, got {arr.dtype}")


def upload_chunk(frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(T, H, W, 3) host frames of :func:`host_frame` -> (T, 3, H, W) float32 in [-1, 1] on
    ``device``: one copy (pinned and asynchronous on CUDA), the conversion on the device."""
    deep = frames.dtype == torch.int16
    if device.type == "cuda":
        t = frames.pin_memory().to(device, non_blocking=True)
    else:
        t = frames.to(device)
    if deep:
        t = t.to(torch.int32) & 0xFFFF
    scale = 65535.0 if deep else 255.0
    return t.permute(0, 3, 1, 2).float().mul_(2.0 / scale).sub_(1.0)


class HostCopy:
    """A device tensor on its way to the host: one copy, pinned and asynchronous on CUDA (on a
    side stream, so that it overlaps the next chunk's compute), finished by :meth:`wait`."""

    def __init__(self, t: torch.Tensor, stream: torch.cuda.Stream | None = None) -> None:
        self._event: torch.cuda.Event | None = None
        if t.device.type != "cuda":
            self._host = t
            return
        self._host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        if stream is None:
            self._host.copy_(t, non_blocking=True)
        else:
            stream.wait_stream(torch.cuda.current_stream(t.device))
            with torch.cuda.stream(stream):
                self._host.copy_(t, non_blocking=True)
            t.record_stream(stream)  # the copy still reads t after the caller lets go of it
        self._event = torch.cuda.Event()
        self._event.record(stream)

    def wait(self) -> torch.Tensor:
        """The host tensor, once the copy has landed."""
        if self._event is not None:
            self._event.synchronize()
            self._event = None
        return self._host


def levels(sr: torch.Tensor, deep: bool) -> torch.Tensor:
    """(N, 3, H, W) roughly in [-1, 1] -> the same frames' rounded code values, 0..255 (0..65535
    when ``deep``), as float32 (N, 3, H, W) on the device."""
    maxval = 65535.0 if deep else 255.0
    return ((sr.float() + 1.0) * (maxval / 2.0)).clamp_(0.0, maxval).round_()


def quantise(sr: torch.Tensor, deep: bool) -> torch.Tensor:
    """(N, 3, H, W) roughly in [-1, 1] -> rounded (N, H, W, 3) uint8, or the uint16 bits as int16
    when ``deep``, contiguous and still on the device."""
    q = levels(sr, deep).permute(0, 2, 3, 1)
    # Through int32: values above 32767 wrap to the int16 with the same 16 bits.
    return (q.to(torch.int32).to(torch.int16) if deep else q.to(torch.uint8)).contiguous()


def host_arrays(q: torch.Tensor) -> list[np.ndarray]:
    """The frames of a host tensor from :func:`quantise` as (H, W, 3) uint8/uint16 arrays (views)."""
    a = q.numpy()
    if a.dtype == np.int16:
        a = a.view(np.uint16)
    return list(a)
