"""Shared test helpers: tiny network dims, tiny random weights on disk, the environment for
running the installed ``adcvsr`` script."""

from __future__ import annotations

import os
from pathlib import Path

from adcvsr_cli.model import AdcVSR, AdcVSRDims, DecoderDims, TemporalDims, UNetDims


def tiny_dims(temporal: bool = False, padding_mode: str = "replicate") -> AdcVSRDims:
    return AdcVSRDims(
        unet=UNetDims(widths=(16, 32, 32, 32), head_dim=8, out_channels=16),
        decoder=DecoderDims(latent_channels=16, widths=(16, 16, 8, 8), layers_per_block=2),
        temporal=TemporalDims(padding_mode=padding_mode) if temporal else None,
    )


def write_tiny_weights(
    path: Path,
    dims: AdcVSRDims | None = None,
    *,
    temporal: bool = False,
    seed: int = 0,
    source: str = "test",
) -> Path:
    """A random-init network (``dims``, else ``tiny_dims(temporal)``) saved as a native
    checkpoint at ``path``; returns ``path``."""
    from adcvsr_cli.model import init_random_
    from adcvsr_cli.weights import save_native

    dims = dims if dims is not None else tiny_dims(temporal)
    model = AdcVSR(dims)
    init_random_(model, seed)
    save_native(model.state_dict(), dims, path, source=source)
    return path


def cli_env(cache: Path, **extra: str) -> dict[str, str]:
    """The environment for running the ``adcvsr`` script in a test: one torch thread, nothing
    downloaded (HF_HUB_OFFLINE), a private weights cache, unbuffered output, no COLUMNS from
    the terminal that runs the tests; ``extra`` adds or overrides variables."""
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", ADCVSR_CACHE=str(cache))
    e.update(PYTHONUNBUFFERED="1")
    e.pop("COLUMNS", None)
    e.update(extra)
    return e
