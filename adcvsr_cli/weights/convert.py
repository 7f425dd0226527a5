"""Safe conversion of the released AdcSR checkpoint files into the native format.

The released files are pickles (``torch.save``): ``weight/net_params_200.pkl`` (UNet and decoder
mid block, every UNet tensor stored under two aliases) and ``weight/pretrained/halfDecoder.ckpt``
(a Lightning training checkpoint whose ``state_dict`` holds the half-width decoder). A pickle can
run code while it loads, so they are read with ``torch.load(weights_only=True)`` (passed
explicitly: ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` would flip the default) and an allow-list
that adds only inert stand-ins for the Lightning classes the real ``.ckpt`` names. Anything else
a file asks for is refused before it can run.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import struct
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConversionError
from ..model import AdcVSRDims, adcsr_dims
from .native import _check_names_and_shapes, save_native

NET_PREFIX = "module.body.1."
MID_PREFIX = "module.body.2."
DEC_PREFIX = "decoder."
# ``module.body.1.body.N`` aliases the UNet's named children, in this order.
_BODY_ALIAS = {
    **{str(i): f"down_blocks.{i}" for i in range(4)},
    "4": "mid_block",
    **{str(5 + i): f"up_blocks.{i}" for i in range(4)},
    "9": "conv_norm_out",
    "11": "conv_out",
}
_BODY_RE = re.compile(r"^body\.(\d+)(\..+)$")
_DECODER_USED = ("up_blocks.", "conv_norm_out.", "conv_out.")
_DECODER_IGNORED = ("conv_in.", "mid_block.")  # the UNet output feeds a mid block of its own


def map_official_key(key: str, source: str) -> str | None:
    """Map one released key to the native name, or ``None`` for a key to ignore.

    ``source`` is ``"net_params"`` or ``"half_decoder"``. Raises :class:`ConversionError` for a
    key that belongs in neither category (an unknown layout).
    """
    if source == "net_params":
        if key.startswith(NET_PREFIX):
            rest = key[len(NET_PREFIX) :]
            m = _BODY_RE.match(rest)
            if m:
                if m.group(1) not in _BODY_ALIAS:
                    raise ConversionError(f"unknown alias key {key!r}")
                rest = _BODY_ALIAS[m.group(1)] + m.group(2)
            return "unet." + rest
        if key.startswith(MID_PREFIX):
            return "decoder.mid_block." + key[len(MID_PREFIX) :]
        raise ConversionError(
            f"unexpected key {key!r} in net_params (expected {NET_PREFIX}* or {MID_PREFIX}*)"
        )
    if source == "half_decoder":
        if not key.startswith(DEC_PREFIX):
            return None  # encoder, loss, quant_conv ... of the training checkpoint
        rest = key[len(DEC_PREFIX) :]
        if rest.startswith(_DECODER_USED):
            return "decoder." + rest
        if rest.startswith(_DECODER_IGNORED):
            return None
        raise ConversionError(f"unexpected decoder key {key!r} in half_decoder")
    raise ValueError(f"source must be 'net_params' or 'half_decoder', got {source!r}")


def to_released_layout(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Inverse of the mapping: native tensors -> (net_params dict, half-decoder ``decoder.*`` dict).

    UNet tensors appear under both aliases, sharing storage as in the released file. Used to
    build released-format test files; temporal blocks have no released form and are refused.
    """
    inverse_alias = {v: k for k, v in _BODY_ALIAS.items()}
    net: dict[str, torch.Tensor] = {}
    dec: dict[str, torch.Tensor] = {}
    for k, t in state.items():
        if ".temporal_" in k:
            raise ValueError(f"{k}: temporal blocks have no released AdcSR form")
        if k.startswith("unet."):
            rest = k[len("unet.") :]
            net[NET_PREFIX + rest] = t
            head, _, tail = rest.partition(".")
            if head in ("down_blocks", "up_blocks"):
                idx, _, tail = tail.partition(".")
                head = f"{head}.{idx}"
            if head in inverse_alias:
                net[f"{NET_PREFIX}body.{inverse_alias[head]}.{tail}"] = t
        elif k.startswith("decoder.mid_block."):
            net[MID_PREFIX + k[len("decoder.mid_block.") :]] = t
        elif k.startswith("decoder."):
            dec[k] = t
        else:
            raise ValueError(f"unexpected native key {k!r}")
    return net, dec


# ----------------------------------------------------------------------------- safe loading


class LightningCheckpointStandIn:
    """Inert stand-in for ``pytorch_lightning...ModelCheckpoint``: holds state, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state


class LightningAttributeDictStandIn(dict):
    """Inert stand-in for Lightning's ``AttributeDict`` (a plain dict of hyper-parameters)."""


_STAND_INS: list[tuple[type, str]] = [
    (LightningCheckpointStandIn, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
    (LightningCheckpointStandIn, "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint"),
    (LightningAttributeDictStandIn, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (LightningAttributeDictStandIn, "lightning.fabric.utilities.data.AttributeDict"),
]

_ZIP_MAGIC = b"PK\x03\x04"
# What torch.load raises on a cut-off or damaged file (zip or legacy pickle), seen by cutting and
# overwriting released-layout files at random (test_convert.py): its legacy reader asserts, and
# indexes, unpacks and decodes stored bytes unchecked.
_CORRUPT = (
    pickle.UnpicklingError,
    RuntimeError,
    ValueError,
    OSError,
    EOFError,
    IndexError,
    KeyError,
    struct.error,
    AssertionError,
    zipfile.BadZipFile,
)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def safe_load(path: str | os.PathLike) -> Any:
    """``torch.load`` with ``weights_only=True`` plus the Lightning stand-ins; never runs code."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic:
        raise ConversionError(f"{path}: file is empty")
    if magic[:1] != b"\x80" and magic != _ZIP_MAGIC:
        raise ConversionError(f"{path}: not a PyTorch checkpoint (unrecognised header {magic!r})")
    try:
        with torch.serialization.safe_globals(_STAND_INS):  # type: ignore[arg-type]
            return torch.load(path, map_location="cpu", weights_only=True, mmap=magic == _ZIP_MAGIC)
    except _CORRUPT as e:  # refuse, say why, keep the cause
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Unsupported global" in str(e) or "weights_only" in str(e):
            unsafe = _unsafe_globals(path)
            what = f" it asks for {', '.join(unsafe)}" if unsafe else ""
            raise ConversionError(
                f"{path}: refused: the pickle needs code outside the allow-list;{what}. "
                "Nothing from the file was run."
            ) from e
        raise ConversionError(
            f"{path}: cannot read the checkpoint (truncated or corrupt?): {msg}"
        ) from e


def _unsafe_globals(path: Path) -> list[str]:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except _CORRUPT:
        return []  # only the message's detail is lost: the file is refused either way
    allowed = {name for _, name in _STAND_INS}
    return [n for n in names if n not in allowed]


# ----------------------------------------------------------------------------- conversion


@dataclass
class ConvertReport:
    out: Path
    tensors: int
    parameters: int
    aliases_merged: int
    ignored_keys: list[str] = field(default_factory=list)
    source_sha256: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _tensor_dict(obj: Any, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise ConversionError(
            f"{path}: expected a dict of tensors for {what}, got {type(obj).__name__}"
        )
    bad = [
        str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)
    ]
    if bad:
        raise ConversionError(f"{path}: {what} holds non-tensor entries: {', '.join(bad[:3])}")
    return dict(obj)


def map_state(
    net_params: Mapping[str, torch.Tensor],
    half_decoder: Mapping[str, torch.Tensor],
    *,
    net_name: str = "net_params",
    dec_name: str = "half_decoder",
) -> tuple[dict[str, torch.Tensor], int, list[str]]:
    """Rename both released dicts to native names; aliased keys must hold identical tensors.

    Returns (native state, number of aliases merged, ignored keys).
    """
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    merged = 0
    ignored: list[str] = []
    for source, name, tensors in (
        ("net_params", net_name, net_params),
        ("half_decoder", dec_name, half_decoder),
    ):
        for key, t in tensors.items():
            try:
                native = map_official_key(key, source)
            except ConversionError as e:
                raise ConversionError(f"{name}: {e}") from None
            if native is None:
                ignored.append(key)
                continue
            if native in out:
                if out[native].shape != t.shape or not torch.equal(out[native], t):
                    raise ConversionError(
                        f"{name}: aliased keys {origin[native]!r} and {key!r} hold different tensors"
                    )
                merged += 1
                continue
            out[native] = t
            origin[native] = key
    return out, merged, ignored


def convert_adcsr(
    net_params: str | os.PathLike,
    half_decoder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    dims: AdcVSRDims | None = None,
    source: str = "",
    source_sha256: Mapping[str, str] | None = None,
    on_event: Callable[[dict], None] | None = None,
) -> ConvertReport:
    """Convert the released AdcSR pair of files into one native ``.safetensors`` file.

    ``dims`` defaults to the released AdcSR network. ``source_sha256`` (``{"net_params": ...,
    "half_decoder": ...}``) gives hashes the caller has just verified, so the files are not
    hashed a second time. The output is written atomically; on any failure no file (partial or
    otherwise) is left at ``out``.
    """
    t0 = time.perf_counter()
    dims = dims or adcsr_dims()
    if dims.temporal is not None:
        raise ConversionError("released AdcSR files have no temporal blocks: use dims without them")
    net_path, dec_path, out = Path(net_params), Path(half_decoder), Path(out)
    emit = on_event or (lambda _e: None)
    hashes = {}
    for label, p in (("net_params", net_path), ("half_decoder", dec_path)):
        if not p.is_file():
            raise ConversionError(f"{p}: no such file ({label})")
        if source_sha256 and source_sha256.get(label):
            hashes[label] = source_sha256[label]
            continue
        emit({"type": "convert", "stage": "hash", "file": str(p)})
        hashes[label] = sha256_file(p)
    emit({"type": "convert", "stage": "load", "file": str(net_path)})
    net = _tensor_dict(safe_load(net_path), net_path, "net_params")
    emit({"type": "convert", "stage": "load", "file": str(dec_path)})
    ckpt = safe_load(dec_path)
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise ConversionError(
            f"{dec_path}: expected a training checkpoint with a 'state_dict' entry"
        )
    dec = _tensor_dict(ckpt["state_dict"], dec_path, "state_dict")
    state, merged, ignored = map_state(net, dec, net_name=str(net_path), dec_name=str(dec_path))
    try:
        _check_names_and_shapes(
            {k: tuple(v.shape) for k, v in state.items()}, dims, f"{net_path} + {dec_path}"
        )
    except CheckpointError as e:
        raise ConversionError(str(e)) from None
    bad = [k for k, v in state.items() if not v.is_floating_point()]
    if bad:
        raise ConversionError(f"{net_path}: non-float tensors: {', '.join(bad[:3])}")
    emit({"type": "convert", "stage": "write", "file": str(out)})
    src = (
        source
        or f"adcsr-pickle net_params sha256={hashes['net_params']} half_decoder sha256={hashes['half_decoder']}"
    )
    save_native(
        state,
        dims,
        out,
        source=src,
        metadata={
            "arch": "adcsr",
            "scale": str(dims.scale),
            "net_params_sha256": hashes["net_params"],
            "half_decoder_sha256": hashes["half_decoder"],
        },
    )
    return ConvertReport(
        out=out,
        tensors=len(state),
        parameters=sum(v.numel() for v in state.values()),
        aliases_merged=merged,
        ignored_keys=ignored,
        source_sha256=hashes,
        seconds=time.perf_counter() - t0,
    )


def write_released_files(
    state: Mapping[str, torch.Tensor],
    net_params_path: str | os.PathLike,
    half_decoder_path: str | os.PathLike,
    *,
    extra_checkpoint_entries: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> None:
    """Write native tensors in the released AdcSR layout (for tests and fixtures).

    The ``.ckpt`` also gets what the converter must ignore: a ``conv_in`` and a mid block of the
    decoder (different values), unrelated encoder and loss keys, training counters.
    """
    net, dec = to_released_layout(state)
    g = torch.Generator().manual_seed(seed)
    latent = state["decoder.mid_block.resnets.0.conv1.weight"].shape[0]
    dec = dict(dec)
    dec["decoder.conv_in.weight"] = torch.randn(latent, 4, 3, 3, generator=g)
    dec["decoder.conv_in.bias"] = torch.randn(latent, generator=g)
    for k, t in state.items():
        if k.startswith("decoder.mid_block."):
            dec[k] = torch.randn(t.shape, generator=g)
    full_sd = {
        "encoder.conv_in.weight": torch.randn(8, 3, 3, 3, generator=g),
        "loss.logvar": torch.zeros(()),
        **dec,
    }
    ckpt: dict[str, Any] = {"epoch": 3, "global_step": 1000, "state_dict": full_sd}
    ckpt.update(extra_checkpoint_entries or {})
    torch.save(net, net_params_path)
    torch.save(ckpt, half_decoder_path)
