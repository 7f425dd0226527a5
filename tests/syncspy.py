"""Count host transfers and synchronising calls of the engine, on any device (the CPU included).

:class:`SyncSpy` is a ``TorchFunctionMode``: every tensor call goes through it. It follows which
tensors live on the *device*: the network's parameters and buffers (:meth:`SyncSpy.on_device`),
whatever is copied to the device (``to`` with a device or dtype-and-device, ``copy_`` into a
device tensor) and every result of a call that takes a device tensor. On a device tensor it counts
what, on CUDA, makes the host wait for the device: a read of a value (``bool``, ``float``,
``int``, ``item``, ``tolist``) and a copy to the host (``numpy``, ``cpu``, ``copy_`` into a host
tensor, ``to`` another device type); ``upload`` counts copies of host tensors to the device. On
the CPU, ``to("cpu")`` of a device tensor cannot be told from a move within the device and is
not counted: the engine copies to the host with ``numpy``, ``cpu`` or ``copy_`` only.
Host-side bookkeeping (plain
CPU tensors that never met the device) is not counted, so the CPU device shows the counts a GPU
would meet.

:func:`sync_options` is the engine setting the counts are taken with (tests/test_sync.py and
benchmarks/sync_counts.py both count it).
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from adcvsr_cli.engine.options import UpscaleOptions

READS = {"__bool__", "__float__", "__int__", "item", "tolist"}
COPIES_OUT = {"numpy", "cpu"}


def sync_options(
    temporal: bool, tile: int, color_fix: str = "adain-temporal", tile_overlap: int = 8
) -> UpscaleOptions:
    """Chunks of 4 frames (image model, batch 4) or 6 overlapping by 2 (temporal model), whole
    frames (``tile=0``) or tiles of ``tile`` LR pixels."""
    return UpscaleOptions(
        chunk=6 if temporal else 4,
        chunk_overlap=2 if temporal else 0,
        batch=4,
        tile=tile,
        tile_overlap=tile_overlap,
        color_fix=color_fix,
    )


def _tensors(x: Any) -> Iterable[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)


def _target_device(args: tuple, kwargs: dict) -> torch.device | None:
    for v in (*args[1:], kwargs.get("device")):
        if isinstance(v, torch.device):
            return v
        if isinstance(v, str):
            try:
                return torch.device(v)
            except RuntimeError:
                continue
    return None


class SyncSpy(TorchFunctionMode):
    def __init__(self, device: str = "cpu") -> None:
        super().__init__()
        self.device = device
        self.counts: Counter[str] = Counter()
        self._device: set[int] = set()  # ids of live device tensors

    def on_device(self, tensors: Iterable[torch.Tensor]) -> SyncSpy:
        """Mark tensors (e.g. ``model.parameters()``) as living on the device."""
        self._mark(list(tensors))
        return self

    def _is_dev(self, t: torch.Tensor) -> bool:
        return id(t) in self._device

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        ins = list(_tensors((args, kwargs)))
        dev_in = any(self._is_dev(t) for t in ins)
        out = func(*args, **kwargs)
        if name == "to" and args and isinstance(args[0], torch.Tensor):
            target = _target_device(args, kwargs)
            if target is not None and self._is_dev(args[0]) and target.type != self.device:
                self.counts["download:to"] += 1
                return out
            if target is not None and not self._is_dev(args[0]) and target.type == self.device:
                self.counts["upload:to"] += 1
                self._mark(out)
                return out
        elif name == "copy_" and len(args) >= 2:
            dst, src = args[0], args[1]
            if self._is_dev(src) and not self._is_dev(dst):
                self.counts["download:copy_"] += 1
                return out
            if not self._is_dev(src) and self._is_dev(dst):
                self.counts["upload:copy_"] += 1
                return out
        elif dev_in and name in READS:
            self.counts["read:" + name] += 1
            return out
        elif dev_in and name in COPIES_OUT:
            self.counts["download:" + name] += 1
            return out
        if dev_in:
            self._mark(out)
            if name.endswith("_") and args and isinstance(args[0], torch.Tensor):
                # Writing device values into a view makes its base hold them too.
                self._mark([args[0], args[0]._base] if args[0]._base is not None else args[0])
        return out

    def _mark(self, out: Any) -> None:
        for t in _tensors(out):
            if id(t) not in self._device:
                self._device.add(id(t))
                weakref.finalize(t, self._device.discard, id(t))

    def total(self, kind: str) -> int:
        return sum(v for k, v in self.counts.items() if k.startswith(kind + ":"))
