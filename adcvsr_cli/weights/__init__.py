"""Weights: the model registry, verified Hub downloads, the conversion cache, the native format.

``registry`` data lives in ``weights.json`` beside this file (the repository's top-level
``weights.json`` links to it). Import from this package, not from its modules.
"""

from __future__ import annotations

from .convert import convert_adcsr, map_state, safe_load, sha256_file, write_released_files
from .native import (
    FORMAT_VERSION,
    NativeHeader,
    atomic_write,
    expected_shapes,
    load_native,
    read_native_header,
    save_native,
)
from .resolve import (
    CACHE_ENV,
    DEFAULT_MODEL,
    HUB_PREFIX,
    REGISTRY_ENV,
    SCHEMA_VERSION,
    DownloadResult,
    ModelEntry,
    ModelStatus,
    Registry,
    ResolvedWeights,
    available_models,
    default_cache_dir,
    download,
    hub_cache_dir,
    list_models,
    load_registry,
    parse_hub_ref,
    resolve_weights,
)

__all__ = [
    "CACHE_ENV",
    "DEFAULT_MODEL",
    "FORMAT_VERSION",
    "HUB_PREFIX",
    "REGISTRY_ENV",
    "SCHEMA_VERSION",
    "DownloadResult",
    "ModelEntry",
    "ModelStatus",
    "NativeHeader",
    "Registry",
    "ResolvedWeights",
    "atomic_write",
    "available_models",
    "convert_adcsr",
    "default_cache_dir",
    "download",
    "expected_shapes",
    "hub_cache_dir",
    "list_models",
    "load_native",
    "load_registry",
    "map_state",
    "parse_hub_ref",
    "read_native_header",
    "resolve_weights",
    "safe_load",
    "save_native",
    "sha256_file",
    "write_released_files",
]
