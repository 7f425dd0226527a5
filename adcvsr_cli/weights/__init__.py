"""Weights: the registry (registry.py, ``weights.json``), verified Hub files and pins (hub.py),
``--weights`` to a native file (resolve.py), the native format (native.py) and the one-time
conversion of the released pickles (convert.py)."""

from .convert import convert_adcsr, map_state, write_released_files
from .hub import HubRef, parse_hub_ref
from .native import (
    FORMAT_VERSION,
    NativeHeader,
    atomic_write,
    expected_shapes,
    load_native,
    read_native_header,
    save_native,
)
from .registry import (
    DEFAULT_MODEL,
    REGISTRY_ENV,
    SCHEMA_VERSION,
    ModelEntry,
    Registry,
    available_models,
    load_registry,
)
from .resolve import (
    DownloadResult,
    ModelStatus,
    ResolvedWeights,
    download,
    list_models,
    peek_dims,
    resolve_weights,
)

__all__ = [
    "DEFAULT_MODEL",
    "FORMAT_VERSION",
    "REGISTRY_ENV",
    "SCHEMA_VERSION",
    "DownloadResult",
    "HubRef",
    "ModelEntry",
    "ModelStatus",
    "NativeHeader",
    "Registry",
    "ResolvedWeights",
    "atomic_write",
    "available_models",
    "convert_adcsr",
    "download",
    "expected_shapes",
    "list_models",
    "load_native",
    "load_registry",
    "map_state",
    "parse_hub_ref",
    "peek_dims",
    "read_native_header",
    "resolve_weights",
    "save_native",
    "write_released_files",
]
