"""The AdcVSR / AdcSR network: a one-step x4 super-resolution model in plain PyTorch.

LR frames (N, 3, H, W) in [-1, 1] go through PixelUnshuffle(2), a pruned Stable Diffusion 2.1
UNet without timestep or text conditioning, the mid block of a VAE decoder and a half-width VAE
decoder, and come out as (N, 3, 4H, 4W). AdcVSR adds 1-D temporal convolutions after every
ResBlock and SpatialTransformer of the UNet; they see the frames of a clip, which travel as
(B*T, C, H, W) with the clip length T given to ``forward``.

Module names follow the released checkpoint's sub-key names (``resnets.j.conv1``,
``attentions.j.transformer_blocks.0.attn1.to_q``...), so that the converter only rewrites
prefixes. This module imports nothing but torch and the standard library.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

GROUP_CANDIDATES = (32, 24, 16, 12, 8, 6, 4, 2, 1)
PADDING_MODES = ("replicate", "zeros")


def group_count(channels: int, max_groups: int = 32) -> int:
    """GroupNorm group count of the pruned network: the first candidate <= max that divides."""
    for g in GROUP_CANDIDATES:
        if g <= max_groups and channels % g == 0:
            return g
    return 1


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class UNetDims:
    """Widths and settings of the pruned SD-2.1 UNet (defaults: the released AdcSR network)."""

    in_channels: int = 12
    out_channels: int = 256
    widths: tuple[int, ...] = (240, 480, 960, 960)
    attention: tuple[bool, ...] = (True, True, True, False)
    head_dim: int = 48
    layers_per_block: int = 2
    mid_attention: bool = True
    norm_eps: float = 1e-5
    transformer_norm_eps: float = 1e-6
    layer_norm_eps: float = 1e-5
    ff_mult: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "attention", tuple(bool(a) for a in self.attention))
        for name in ("in_channels", "out_channels", "head_dim", "layers_per_block", "ff_mult"):
            _positive(name, getattr(self, name))
        if len(self.widths) < 1:
            raise ValueError("widths must name at least one level")
        if len(self.attention) != len(self.widths):
            raise ValueError(
                f"attention has {len(self.attention)} entries, widths {len(self.widths)}: "
                "they must match"
            )
        for i, w in enumerate(self.widths):
            _positive(f"widths[{i}]", w)
            uses_attn = self.attention[i] or (self.mid_attention and i == len(self.widths) - 1)
            if uses_attn and w % self.head_dim:
                raise ValueError(
                    f"width {w} of level {i} is not a multiple of head_dim {self.head_dim}"
                )
        for name in ("norm_eps", "transformer_norm_eps", "layer_norm_eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")

    @property
    def downsamplings(self) -> int:
        return len(self.widths) - 1


@dataclass(frozen=True)
class DecoderDims:
    """The half-width VAE decoder: mid block at the latent width, then up blocks."""

    latent_channels: int = 256
    widths: tuple[int, ...] = (256, 256, 128, 64)
    layers_per_block: int = 3
    max_groups: int = 32
    eps: float = 1e-6
    out_channels: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        for name in ("latent_channels", "layers_per_block", "max_groups", "out_channels"):
            _positive(name, getattr(self, name))
        if len(self.widths) < 1:
            raise ValueError("decoder widths must name at least one up block")
        for i, w in enumerate(self.widths):
            _positive(f"decoder widths[{i}]", w)
        if not self.eps > 0:
            raise ValueError("decoder eps must be > 0")

    @property
    def upsamplings(self) -> int:
        return len(self.widths) - 1


@dataclass(frozen=True)
class TemporalDims:
    """AdcVSR's 1-D temporal convolutions along the time axis of a clip."""

    kernel_size: int = 3
    padding_mode: str = "replicate"

    def __post_init__(self) -> None:
        _positive("kernel_size", self.kernel_size)
        if self.kernel_size % 2 != 1:
            raise ValueError(f"temporal kernel_size must be odd, got {self.kernel_size}")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(
                f"temporal padding_mode {self.padding_mode!r} is not one of {', '.join(PADDING_MODES)}"
            )


@dataclass(frozen=True)
class AdcVSRDims:
    """Everything needed to build the network. Travels inside every native checkpoint."""

    unet: UNetDims = field(default_factory=UNetDims)
    decoder: DecoderDims = field(default_factory=DecoderDims)
    temporal: TemporalDims | None = None
    unshuffle: int = 2

    def __post_init__(self) -> None:
        _positive("unshuffle", self.unshuffle)
        if self.unet.in_channels != 3 * self.unshuffle**2:
            raise ValueError(
                f"unet.in_channels {self.unet.in_channels} != 3 * unshuffle^2 = {3 * self.unshuffle**2}"
            )
        if self.unet.out_channels != self.decoder.latent_channels:
            raise ValueError(
                f"unet.out_channels {self.unet.out_channels} != decoder.latent_channels "
                f"{self.decoder.latent_channels}"
            )
        if self.decoder.upsamplings < 1 or 2**self.decoder.upsamplings < self.unshuffle:
            raise ValueError("the decoder must upsample at least back to the input size")

    @property
    def scale(self) -> int:
        """Output size / input size."""
        return 2**self.decoder.upsamplings // self.unshuffle

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (pad, then crop the output)."""
        return self.unshuffle * 2**self.unet.downsamplings

    @property
    def has_temporal(self) -> bool:
        return self.temporal is not None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdcVSRDims:
        """Build from the JSON form; unknown or missing fields raise ValueError/TypeError."""
        if not isinstance(d, dict):
            raise TypeError("dims must be a JSON object")
        d = dict(d)
        unet = UNetDims(**d.pop("unet", {}))
        decoder = DecoderDims(**d.pop("decoder", {}))
        temporal_d = d.pop("temporal", None)
        temporal = TemporalDims(**temporal_d) if temporal_d is not None else None
        return cls(unet=unet, decoder=decoder, temporal=temporal, **d)

    @classmethod
    def from_json(cls, s: str) -> AdcVSRDims:
        return cls.from_dict(json.loads(s))


LAYOUT_PARTS = ("unet", "mid", "up")


@dataclass(frozen=True)
class Layout:
    """Memory format of each part of the network: True = channels-last (NHWC), False =
    contiguous (NCHW). ``unet``: the UNet; ``mid``: the decoder mid block; ``up``: the decoder
    up blocks and output layers. Which is fastest depends on the device (GroupNorm and
    convolution kernels differ per format), so it is measured, not assumed.

    Written as the channels-last parts joined by ``+`` (``"up"``, ``"mid+up"``), ``"contiguous"``
    for none and ``"channels_last"`` for all.
    """

    unet: bool = False
    mid: bool = False
    up: bool = False

    @classmethod
    def parse(cls, spec: str) -> Layout:
        """``"mid+up"`` -> Layout(mid=True, up=True). Raises ValueError on an unknown part."""
        s = spec.strip().lower()
        if s in ("contiguous", "none", ""):
            return cls()
        if s in ("channels_last", "all"):
            return cls(True, True, True)
        parts = [p.strip() for p in s.split("+")]
        bad = [p for p in parts if p not in LAYOUT_PARTS]
        if bad:
            raise ValueError(
                f"layout {spec!r}: unknown part {bad[0]!r} (parts: {', '.join(LAYOUT_PARTS)}; "
                "or contiguous, channels_last)"
            )
        return cls(**{p: True for p in parts})

    @classmethod
    def all_options(cls) -> list[Layout]:
        """The 8 combinations, contiguous first, channels-last everywhere last."""
        return [cls(u, m, p) for u in (False, True) for m in (False, True) for p in (False, True)]

    @property
    def name(self) -> str:
        on = [p for p in LAYOUT_PARTS if getattr(self, p)]
        if not on:
            return "contiguous"
        return "channels_last" if len(on) == len(LAYOUT_PARTS) else "+".join(on)


def _memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def adcsr_dims() -> AdcVSRDims:
    """Dims of the released AdcSR network (456 M parameters, no temporal blocks)."""
    return AdcVSRDims()


def adcvsr_dims(padding_mode: str = "replicate") -> AdcVSRDims:
    """Dims of AdcVSR: AdcSR plus 38 temporal blocks (0.57 B parameters)."""
    return AdcVSRDims(temporal=TemporalDims(padding_mode=padding_mode))


# ----------------------------------------------------------------------------- building blocks

# Nearest x2 upsampling then a 3x3 convolution, on the CPU from inputs of at least
# PHASE_UPSAMPLE_PIXELS pixels (the decoder's 32-128 px levels, the UNet's 16 px one): four 2x2
# convolutions of the input, one per output phase: 4/9 of the multiply-adds and no upsampled
# copy; the same sums in another order (float32 rounding apart). Measured on the 2-core machine
# (AdcSR dims, 2 frames 64x64, fp32, 2 threads, interleaved): the six upsampling convolutions
# 0.72 (min) / 0.92 (median) of their time before, process CPU time. (3x3 convolutions of the
# UNet's 4x4 and 8x8 levels as unfold + one matrix product measured 0.99 / 1.05: not taken.)
PHASE_UPSAMPLE_PIXELS = 256


def _fold_taps(k: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3-tap kernel axis seen from a nearest x2 upsampled image: an even output position
    reads input offsets (-1, 0) with taps (0, 1+2), an odd one (0, +1) with taps (0+1, 2)."""
    t0, t1, t2 = k.unbind(dim)
    return torch.stack([t0, t1 + t2], dim), torch.stack([t0 + t1, t2], dim)


def upsample_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(interpolate(x, scale_factor=2, mode="nearest"))`` for a 3x3, padding 1 ``conv``,
    as one 2x2 convolution giving the four output phases (N, 4*O, H+1, W+1), interleaved into
    (N, O, 2H, 2W) in ``x``'s memory format."""
    n, _, h, w = x.shape
    o = conv.out_channels
    fmt = torch.contiguous_format if x.is_contiguous() else torch.channels_last
    kernels = [kk for k in _fold_taps(conv.weight, 2) for kk in _fold_taps(k, 3)]
    weight = torch.cat(kernels).contiguous(memory_format=fmt)  # (4*O, C, 2, 2), phases row-major
    bias = None if conv.bias is None else conv.bias.repeat(4)
    y = F.conv2d(F.pad(x, (1, 1, 1, 1)), weight, bias)  # phase (a, b) at offset (a, b)
    out = torch.empty((n, o, 2 * h, 2 * w), dtype=y.dtype, device=y.device, memory_format=fmt)
    for i, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[:, :, a::2, b::2] = y[:, i * o : (i + 1) * o, a : a + h, b : b + w]
    return out


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, plus a (1x1-projected when widths differ) shortcut."""

    def __init__(self, cin: int, cout: int, eps: float, max_groups: int = 32) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(group_count(cin, max_groups), cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(group_count(cout, max_groups), cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place on the fresh norm and conv outputs: the same values, two large allocations
        # (and their page faults on the CPU) fewer per block.
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return h.add_(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens (N, L, C); q/k/v without bias (SD's attn1)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        n, length, c = t.shape
        # (N, L, C) -> (N, heads, L, head_dim). The scale is SDPA's default 1/sqrt(head_dim),
        # i.e. 1/sqrt(48) for the pruned widths, as the reference computes it.
        q, k, v = (
            proj(t).view(n, length, self.heads, c // self.heads).transpose(1, 2)
            for proj in (self.to_q, self.to_k, self.to_v)
        )
        o = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](o.transpose(1, 2).reshape(n, length, c))


class GEGLU(nn.Module):
    def __init__(self, channels: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, channels: int, mult: int) -> None:
        super().__init__()
        # Index 1 (dropout in the original) has no parameters; keep the checkpoint's numbering.
        self.net = nn.ModuleList(
            [GEGLU(channels, mult * channels), nn.Identity(), nn.Linear(mult * channels, channels)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class TransformerBlock(nn.Module):
    def __init__(self, channels: int, heads: int, eps: float, ff_mult: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(channels, eps=eps)
        self.attn1 = SelfAttention(channels, heads)
        self.norm3 = nn.LayerNorm(channels, eps=eps)
        self.ff = FeedForward(channels, ff_mult)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = t + self.attn1(self.norm1(t))
        return t + self.ff(self.norm3(t))


class SpatialTransformer(nn.Module):
    """GroupNorm -> tokens -> proj_in -> one transformer block -> proj_out -> residual."""

    def __init__(self, channels: int, dims: UNetDims) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(group_count(channels), channels, eps=dims.transformer_norm_eps)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            [
                TransformerBlock(
                    channels, channels // dims.head_dim, dims.layer_norm_eps, dims.ff_mult
                )
            ]
        )
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        t = self.norm(x).permute(0, 2, 3, 1).reshape(n, h * w, c)  # (N, HW, C)
        t = self.proj_in(t)
        for block in self.transformer_blocks:
            t = block(t)
        t = self.proj_out(t)
        return x + t.reshape(n, h, w, c).permute(0, 3, 1, 2)


class TemporalBlock(nn.Module):
    """AdcVSR's ``x + conv_b(relu(conv_a(x)))`` with Conv1d(C, C, k) along time only.

    Frames travel as (B*T, C, H, W); the block views them as (B, T, C, H, W). The clip ends are
    padded by ``padding_mode`` (replicate: the clip continues as a still; zeros: nothing beyond).
    Weights are stored as Conv1d weights (C, C, k).
    """

    def __init__(self, channels: int, dims: TemporalDims) -> None:
        super().__init__()
        self.kernel_size = dims.kernel_size
        self.padding_mode = dims.padding_mode
        self.conv_a = nn.Conv1d(channels, channels, dims.kernel_size)
        self.conv_b = nn.Conv1d(channels, channels, dims.kernel_size)

    def _conv(self, conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, T, H, W). A (k, 1, 1) Conv3d is exactly a Conv1d along T at every pixel.
        p = self.kernel_size // 2
        if p:
            if self.padding_mode == "replicate":
                x = torch.cat([x[:, :, :1]] * p + [x] + [x[:, :, -1:]] * p, dim=2)
            else:
                x = F.pad(x, (0, 0, 0, 0, p, p))
        return F.conv3d(x, conv.weight.unsqueeze(-1).unsqueeze(-1), conv.bias)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        bt, c, h, w = x.shape
        if bt % frames:
            raise ValueError(f"batch of {bt} frames is not a whole number of {frames}-frame clips")
        v = x.view(bt // frames, frames, c, h, w).transpose(1, 2)  # (B, C, T, H, W)
        y = self._conv(self.conv_b, F.relu(self._conv(self.conv_a, v)))
        return x + y.transpose(1, 2).reshape(bt, c, h, w)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if x.device.type == "cpu" and h * w >= PHASE_UPSAMPLE_PIXELS and min(h, w) > 1:
            return upsample_conv(x, self.conv)
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _temporal_list(n: int, channels: int, dims: TemporalDims | None) -> nn.ModuleList | None:
    if dims is None:
        return None
    return nn.ModuleList([TemporalBlock(channels, dims) for _ in range(n)])


def _apply(
    layer: nn.Module, temporal: nn.ModuleList | None, j: int, x: torch.Tensor, frames: int
) -> torch.Tensor:
    x = layer(x)
    if temporal is not None:
        x = temporal[j](x, frames)
    return x


# ----------------------------------------------------------------------------- the UNet


class DownBlock(nn.Module):
    def __init__(
        self,
        cin: int,
        cout: int,
        attn: bool,
        down: bool,
        dims: UNetDims,
        tdims: TemporalDims | None,
    ) -> None:
        super().__init__()
        n = dims.layers_per_block
        self.resnets = nn.ModuleList(
            [ResBlock(cin if j == 0 else cout, cout, dims.norm_eps) for j in range(n)]
        )
        self.attentions = (
            nn.ModuleList([SpatialTransformer(cout, dims) for _ in range(n)]) if attn else None
        )
        self.downsamplers = nn.ModuleList([Downsample(cout)]) if down else None
        self.temporal_resnets = _temporal_list(n, cout, tdims)
        self.temporal_attentions = _temporal_list(n, cout, tdims) if attn else None

    def forward(self, x: torch.Tensor, frames: int, skips: list[torch.Tensor]) -> torch.Tensor:
        for j, res in enumerate(self.resnets):
            x = _apply(res, self.temporal_resnets, j, x, frames)
            if self.attentions is not None:
                x = _apply(self.attentions[j], self.temporal_attentions, j, x, frames)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x


class MidBlock(nn.Module):
    def __init__(self, ch: int, attn: bool, dims: UNetDims, tdims: TemporalDims | None) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResBlock(ch, ch, dims.norm_eps), ResBlock(ch, ch, dims.norm_eps)]
        )
        self.attentions = nn.ModuleList([SpatialTransformer(ch, dims)]) if attn else None
        self.temporal_resnets = _temporal_list(2, ch, tdims)
        self.temporal_attentions = _temporal_list(1, ch, tdims) if attn else None

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        x = _apply(self.resnets[0], self.temporal_resnets, 0, x, frames)
        if self.attentions is not None:
            x = _apply(self.attentions[0], self.temporal_attentions, 0, x, frames)
        return _apply(self.resnets[1], self.temporal_resnets, 1, x, frames)


class UpBlock(nn.Module):
    def __init__(
        self,
        cin: int,
        cout: int,
        skip_ch: list[int],
        attn: bool,
        up: bool,
        dims: UNetDims,
        tdims: TemporalDims | None,
    ) -> None:
        super().__init__()
        n = len(skip_ch)
        self.resnets = nn.ModuleList(
            [
                ResBlock((cin if j == 0 else cout) + skip_ch[j], cout, dims.norm_eps)
                for j in range(n)
            ]
        )
        self.attentions = (
            nn.ModuleList([SpatialTransformer(cout, dims) for _ in range(n)]) if attn else None
        )
        self.upsamplers = nn.ModuleList([Upsample(cout)]) if up else None
        self.temporal_resnets = _temporal_list(n, cout, tdims)
        self.temporal_attentions = _temporal_list(n, cout, tdims) if attn else None

    def forward(self, x: torch.Tensor, frames: int, skips: list[torch.Tensor]) -> torch.Tensor:
        for j, res in enumerate(self.resnets):
            x = _apply(res, self.temporal_resnets, j, torch.cat([x, skips.pop()], dim=1), frames)
            if self.attentions is not None:
                x = _apply(self.attentions[j], self.temporal_attentions, j, x, frames)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class UNet(nn.Module):
    """The pruned SD-2.1 UNet without time or text conditioning. (N, 12, h, w) -> (N, 256, h, w)."""

    def __init__(self, dims: UNetDims, tdims: TemporalDims | None) -> None:
        super().__init__()
        widths, levels, n = dims.widths, len(dims.widths), dims.layers_per_block
        self.conv_in = nn.Conv2d(dims.in_channels, widths[0], 3, padding=1)
        skip_ch = [widths[0]]
        downs = []
        for i, w in enumerate(widths):
            cin = widths[i - 1] if i else widths[0]
            last = i == levels - 1
            downs.append(DownBlock(cin, w, dims.attention[i], not last, dims, tdims))
            skip_ch += [w] * n + ([] if last else [w])
        self.down_blocks = nn.ModuleList(downs)
        self.mid_block = MidBlock(widths[-1], dims.mid_attention, dims, tdims)
        ups = []
        ch = widths[-1]
        for _u, i in enumerate(reversed(range(levels))):
            w = widths[i]
            skips_here = [skip_ch.pop() for _ in range(n + 1)]
            ups.append(UpBlock(ch, w, skips_here, dims.attention[i], i > 0, dims, tdims))
            ch = w
        assert not skip_ch, "every skip must be consumed"
        self.up_blocks = nn.ModuleList(ups)
        self.conv_norm_out = nn.GroupNorm(group_count(widths[0]), widths[0], eps=dims.norm_eps)
        self.conv_out = nn.Conv2d(widths[0], dims.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        x = self.conv_in(x)
        skips: list[torch.Tensor] = [x]  # local to this call
        for block in self.down_blocks:
            x = block(x, frames, skips)
        x = self.mid_block(x, frames)
        for up in self.up_blocks:
            x = up(x, frames, skips)
        assert not skips
        return self.conv_out(F.silu(self.conv_norm_out(x), inplace=True))


# ----------------------------------------------------------------------------- the VAE decoder


class VAEAttention(nn.Module):
    """Single-head self-attention over pixels with biased q/k/v (the VAE mid block's)."""

    def __init__(self, channels: int, dims: DecoderDims) -> None:
        super().__init__()
        self.group_norm = nn.GroupNorm(
            group_count(channels, dims.max_groups), channels, eps=dims.eps
        )
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        t = self.group_norm(x).view(n, c, h * w).transpose(1, 2)  # (N, HW, C)
        q, k, v = (proj(t).unsqueeze(1) for proj in (self.to_q, self.to_k, self.to_v))
        o = F.scaled_dot_product_attention(q, k, v).squeeze(1)  # scale 1/sqrt(C)
        o = self.to_out[0](o)
        return x + o.transpose(1, 2).reshape(n, c, h, w)


class DecoderMid(nn.Module):
    def __init__(self, dims: DecoderDims) -> None:
        super().__init__()
        c = dims.latent_channels
        self.resnets = nn.ModuleList(
            [ResBlock(c, c, dims.eps, dims.max_groups), ResBlock(c, c, dims.eps, dims.max_groups)]
        )
        self.attentions = nn.ModuleList([VAEAttention(c, dims)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class DecoderUpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, up: bool, dims: DecoderDims) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                ResBlock(cin if j == 0 else cout, cout, dims.eps, dims.max_groups)
                for j in range(dims.layers_per_block)
            ]
        )
        self.upsamplers = nn.ModuleList([Upsample(cout)]) if up else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for res in self.resnets:
            x = res(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class HalfDecoder(nn.Module):
    """VAE decoder without conv_in: (N, 256, h, w) latent features -> (N, 3, 8h, 8w)."""

    def __init__(self, dims: DecoderDims) -> None:
        super().__init__()
        self.mid_block = DecoderMid(dims)
        blocks = []
        cin = dims.latent_channels
        for i, w in enumerate(dims.widths):
            blocks.append(DecoderUpBlock(cin, w, i < len(dims.widths) - 1, dims))
            cin = w
        self.up_blocks = nn.ModuleList(blocks)
        top = dims.widths[-1]
        self.conv_norm_out = nn.GroupNorm(group_count(top, dims.max_groups), top, eps=dims.eps)
        self.conv_out = nn.Conv2d(top, dims.out_channels, 3, padding=1)

    def decode_mid(self, x: torch.Tensor) -> torch.Tensor:
        return self.mid_block(x)

    def decode_up(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x), inplace=True))


# ----------------------------------------------------------------------------- the whole network


class AdcVSR(nn.Module):
    """One-step x4 super-resolution. ``forward(x, frames)``: (B*T, 3, H, W) in [-1, 1] ->
    (B*T, 3, 4H, 4W), roughly in [-1, 1] (no colour fix, no clamp), contiguous whatever the
    :class:`Layout` (``set_layout``) the parts run in.

    H and W must be multiples of ``dims.multiple`` (16). ``frames`` is the clip length T; it
    matters only when the network has temporal blocks (frames of different clips never mix).
    """

    def __init__(self, dims: AdcVSRDims) -> None:
        super().__init__()
        self.dims = dims
        self.unet = UNet(dims.unet, dims.temporal)
        self.decoder = HalfDecoder(dims.decoder)
        self.layout = Layout()

    def set_layout(self, layout: Layout) -> AdcVSR:
        """Put each part's weights, and its inputs from then on, in ``layout``'s memory format.

        The arithmetic is the same in either format; only the kernels' summation order differs
        (outputs agree to float32 rounding).
        """
        parts = (self.unet, self.decoder.mid_block, self._up_modules())
        for on, part in zip((layout.unet, layout.mid, layout.up), parts, strict=True):
            part.to(memory_format=_memory_format(on))  # type: ignore[call-overload]
        self.layout = layout
        return self

    def _up_modules(self) -> nn.ModuleList:
        d = self.decoder
        return nn.ModuleList([d.up_blocks, d.conv_norm_out, d.conv_out])

    def latent(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        """(B*T, 3, H, W) -> the decoder mid block's output (B*T, 256, H/2, W/2)."""
        self._check_input(x, frames)
        h = F.pixel_unshuffle(x, self.dims.unshuffle)
        h = self.unet(h.contiguous(memory_format=_memory_format(self.layout.unet)), frames)
        return self.decoder.decode_mid(h.contiguous(memory_format=_memory_format(self.layout.mid)))

    def decode(self, latent: torch.Tensor, group: int | None = None) -> torch.Tensor:
        """The decoder up blocks on (N, 256, h, w) -> (N, 3, 8h, 8w), contiguous, ``group``
        frames at a time (they have no temporal blocks, so groups bound memory only)."""
        lat = latent.contiguous(memory_format=_memory_format(self.layout.up))
        n = lat.shape[0]
        step = n if group is None else max(1, group)
        outs = [self.decoder.decode_up(lat[i : i + step]) for i in range(0, n, step)]
        y = outs[0] if len(outs) == 1 else torch.cat(outs)
        return y.contiguous()

    def forward(
        self, x: torch.Tensor, frames: int = 1, decode_group: int | None = None
    ) -> torch.Tensor:
        return self.decode(self.latent(x, frames), decode_group)

    def _check_input(self, x: torch.Tensor, frames: int) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B*T, 3, H, W), got {tuple(x.shape)}")
        m = self.dims.multiple
        if x.shape[2] % m or x.shape[3] % m:
            raise ValueError(
                f"H and W must be multiples of {m}, got {x.shape[2]}x{x.shape[3]} (pad first)"
            )
        if frames < 1 or x.shape[0] % frames:
            raise ValueError(
                f"batch of {x.shape[0]} frames is not a whole number of {frames}-frame clips"
            )


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def temporal_block_count(model: AdcVSR) -> int:
    return sum(1 for m in model.modules() if isinstance(m, TemporalBlock))


def zero_temporal_(model: AdcVSR) -> None:
    """Set every temporal convolution to zero (the untrained, identity state)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, TemporalBlock):
                for p in m.parameters():
                    p.zero_()


def scale_standard_normal(name: str, t: torch.Tensor) -> torch.Tensor:
    """Give standard-normal values ``t`` for tensor ``name`` a sensible scale: 1/sqrt(fan-in)
    for matrices and kernels, 1 + 0.1 t for norm weights, 0.05 t otherwise (the rule of the
    parity fixture's weights, and of the random weights of tests and benchmarks)."""
    if t.dim() >= 2:
        return t / math.sqrt(math.prod(t.shape[1:]))
    if "norm" in name and name.endswith(".weight"):
        return 1 + 0.1 * t
    return 0.05 * t


def init_random_(model: nn.Module, seed: int = 0) -> None:
    """Deterministic random weights of a sensible scale (for tests and benchmarks)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(scale_standard_normal(name, torch.randn(p.shape, generator=g)))
