"""adcvsr: fast x4 real-world video super-resolution with AdcVSR / AdcSR.

Public API (imported lazily, so ``import adcvsr_cli`` stays cheap)::

    from adcvsr_cli import available_models, load_model, upscale

    upscaler = load_model("adcsr-x4", device="auto")
    report = upscale("in.mp4", "out.mp4", upscaler)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "available_models": ("weights", "available_models"),
    "load_model": ("pipeline", "load_model"),
    "upscale": ("pipeline", "upscale"),
    "Upscaler": ("pipeline", "Upscaler"),
    "UpscaleOptions": ("pipeline", "UpscaleOptions"),
    "EncodeOptions": ("media", "EncodeOptions"),
    "AdcVSR": ("model", "AdcVSR"),
    "AdcVSRDims": ("model", "AdcVSRDims"),
    "load_native": ("weights", "load_native"),
    "convert_adcsr": ("weights", "convert_adcsr"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
