"""Tiny network dims for fast tests."""

from __future__ import annotations

from adcvsr_cli.model import AdcVSRDims, DecoderDims, TemporalDims, UNetDims


def tiny_dims(temporal: bool = False, padding_mode: str = "replicate") -> AdcVSRDims:
    return AdcVSRDims(
        unet=UNetDims(widths=(16, 32, 32, 32), head_dim=8, out_channels=16),
        decoder=DecoderDims(latent_channels=16, widths=(16, 16, 8, 8), layers_per_block=2),
        temporal=TemporalDims(padding_mode=padding_mode) if temporal else None,
    )
