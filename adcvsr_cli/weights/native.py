"""The native checkpoint: one ``.safetensors`` file whose metadata (``format`` =
``adcvsr-native``, ``format_version``, ``dims`` as JSON, ``source``, free extra keys) carries the
dims. Loading is strict and assigns the tensors to a network built on ``meta``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError
from ..model import AdcVSR, AdcVSRDims

FORMAT_NAME = "adcvsr-native"
FORMAT_VERSION = "1"


@dataclass(frozen=True)
class NativeHeader:
    dims: AdcVSRDims
    format_version: str
    source: str
    metadata: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def expected_shapes(dims: AdcVSRDims) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the network ``dims`` describes (computed on ``meta``)."""
    with torch.device("meta"):
        model = AdcVSR(dims)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``; no partial file survives a failure.

    The file gets mode 0666 less the umask, as any tool's output (safetensors writes 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies
    try:
        mode = tmp.stat().st_mode & 0o777
        write(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_native(
    state_dict: Mapping[str, torch.Tensor],
    dims: AdcVSRDims,
    path: str | os.PathLike,
    *,
    source: str,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``state_dict`` (checked against ``dims``) as a native checkpoint, atomically."""
    _check_names_and_shapes({k: tuple(v.shape) for k, v in state_dict.items()}, dims, str(path))
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(
        format=FORMAT_NAME, format_version=FORMAT_VERSION, dims=dims.to_json(), source=str(source)
    )
    # safetensors refuses shared or non-contiguous tensors. Copy only those: a full copy of
    # every tensor would double the peak memory of a conversion (1.8 GB more at full size).
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for k, v in state_dict.items():
        t = v.detach().to("cpu")
        ptr = t.untyped_storage().data_ptr()
        if not t.is_contiguous() or ptr in storages or t.untyped_storage().nbytes() != t.nbytes:
            t = t.contiguous().clone()
        storages.add(t.untyped_storage().data_ptr())
        tensors[k] = t
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def read_native_header(path: str | os.PathLike) -> NativeHeader:
    """Read and validate the metadata of a native checkpoint without loading any tensor."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path}: not an adcvsr checkpoint (metadata format={meta.get('format')!r}); "
            "convert released AdcSR files with `adcvsr convert`"
        )
    version = meta.get("format_version", "")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported "
            f"(this adcvsr reads version {FORMAT_VERSION})"
        )
    try:
        dims = AdcVSRDims.from_json(meta["dims"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid dims in metadata ({e})") from e
    extra = {k: v for k, v in meta.items() if k not in ("format", "format_version", "dims")}
    return NativeHeader(dims, version, extra.pop("source", ""), extra, shapes)


def _check_names_and_shapes(
    shapes: Mapping[str, tuple[int, ...]], dims: AdcVSRDims, where: str
) -> None:
    want, problems = expected_shapes(dims), []
    for label, items in {
        "missing": [k for k in want if k not in shapes],
        "unexpected": [k for k in shapes if k not in want],
        "wrong shape": [f"{k} {v} != {want[k]}" for k, v in shapes.items() if want.get(k, v) != v],
    }.items():
        more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
        problems += [f"{len(items)} {label}: {', '.join(items[:3])}{more}"] if items else []
    if problems:
        raise CheckpointError(f"{where}: tensors do not match the network: " + "; ".join(problems))


def load_native(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> AdcVSR:
    """Load a native checkpoint strictly into an :class:`AdcVSR` on ``device`` in ``dtype``.

    Each tensor is read straight onto ``device`` and cast there: no CPU copy of the model.
    """
    header = read_native_header(path)
    _check_names_and_shapes(header.shapes, header.dims, str(path))
    with torch.device("meta"):
        model = AdcVSR(header.dims)
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device=str(torch.device(device))) as f:
            for k in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                t = f.get_tensor(k)
                if not t.is_floating_point():
                    raise CheckpointError(f"{path}: tensor {k} has non-float dtype {t.dtype}")
                state[k] = t.to(dtype)
    except SafetensorError as e:
        raise CheckpointError(f"{path}: could not read tensors ({e})") from e
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)
