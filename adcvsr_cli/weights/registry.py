"""The model registry: ``weights.json`` read into frozen dataclasses, which are its schema.

Each JSON object is checked against its dataclass (unknown and missing fields, the JSON type of
each type hint, the field's rule in ``_RULES``), then a few rules relate fields. Every error
names the file, the entry and the field. Keys starting with ``$`` are comments.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from ..model import AdcVSRDims

SCHEMA_VERSION = 1
ARCHITECTURES = ("adcsr", "adcvsr")
# The files each format needs, by role: the released AdcSR pickles (converted once), or one
# native .safetensors file.
FORMATS = {"adcsr-pickle": ("net_params", "half_decoder"), "native": ("weights",)}
DEFAULT_MODEL = "adcsr-x4"
REGISTRY_ENV = "ADCVSR_REGISTRY"
HUB_PREFIX = "hf://"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _in_repo(path: str) -> bool:
    return not (path.startswith("/") or "\\" in path or {"", ".", ".."} & set(path.split("/")))


_POSITIVE = (lambda n: n > 0, "must be a positive integer, got {!r}")
# Each field's rule, by field name: what the value must pass and, if not, what it must be.
_RULES: dict[str, tuple[typing.Callable[[Any], object], str]] = {
    "name": (
        re.compile(r"^[a-z0-9][a-z0-9._-]*$").match,
        "{!r}: use lowercase letters, digits, '.', '_' and '-'",
    ),
    "architecture": (ARCHITECTURES.__contains__, "{!r} is not one of " + ", ".join(ARCHITECTURES)),
    "parameters": _POSITIVE,
    "format": (FORMATS.__contains__, "{!r} is not one of " + ", ".join(FORMATS)),
    "repo_id": (REPO_ID_RE.match, "expected 'owner/name', got {!r}"),
    "path": (_in_repo, "must be a relative path inside the repo, got {!r}"),
    "size": _POSITIVE,
    "sha256": (SHA256_RE.match, "expected 64 lowercase hex digits or null, got {!r}"),
}


@dataclass(frozen=True)
class SourceFile:
    """One file of a model's source: its role, its path in the repo, what we know of it."""

    role: str
    path: str
    size: int | None = None
    sha256: str | None = None
    note: str = ""


@dataclass(frozen=True)
class WeightSource:
    """A Hub repo at a revision (a 40-hex commit pins it; a branch is pinned on first use)."""

    format: str
    files: tuple[SourceFile, ...]
    repo_id: str | None = None
    revision: str | None = None
    note: str = ""

    @property
    def pinned(self) -> bool:
        """True when the registry itself names a commit (immutable)."""
        return bool(self.revision and COMMIT_RE.match(self.revision))

    def file(self, role: str) -> SourceFile:
        return next(f for f in self.files if f.role == role)


@dataclass(frozen=True)
class ModelEntry:
    """One registry entry."""

    name: str
    description: str
    architecture: str
    scale: int
    temporal_blocks: bool
    parameters: int
    dims: AdcVSRDims
    source: WeightSource
    license: str | None = None
    license_note: str = ""
    available: bool = True
    note: str = ""


@dataclass(frozen=True)
class Registry:
    """The parsed, validated registry file."""

    path: Path
    schema_version: int
    default: str
    models: Mapping[str, ModelEntry]

    def get(self, name: str) -> ModelEntry:
        """The entry called ``name``; an unknown name raises WeightsError listing the valid ones."""
        if name in self.models:
            return self.models[name]
        valid = [n if e.available else f"{n} (not yet released)" for n, e in self.models.items()]
        close = difflib.get_close_matches(name, list(self.models), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise WeightsError(
            f"unknown model {name!r}.{hint} Valid names: {', '.join(valid)}. Or give a local .safetensors "
            f"path, or {HUB_PREFIX}owner/repo@revision/file.safetensors."
        )


@dataclass(frozen=True)
class _RegistryFile:
    schema_version: int
    default: str
    models: tuple[Any, ...]


class _Invalid(Exception):
    """A registry rule broken at a place (``models[0] (name).field``): load_registry adds the file."""


def _check(ok: object, where: str, msg: str) -> None:
    if not ok:
        raise _Invalid(f"{where}: {msg}")


def _read(cls: Any, obj: Any, where: str) -> Any:
    """``cls`` from the JSON object ``obj`` (its ``source`` and ``files`` read in turn)."""
    _check(isinstance(obj, dict), where, f"expected a JSON object, got {json.dumps(obj)[:60]}")
    if cls is ModelEntry and isinstance(obj.get("name"), str):
        where = f"{where} ({obj['name']})"
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in obj:
        allowed = f"unknown field (allowed: {', '.join(fields)})"
        _check(key in fields or key.startswith("$"), f"{where}.{key}", allowed)
    values, hints = {}, typing.get_type_hints(cls)
    for name, f in fields.items():
        w, v, required = f"{where}.{name}", obj.get(name), f.default is dataclasses.MISSING
        _check(name in obj or not required, w, "missing (required)")
        if name in obj and (v is not None or type(None) not in typing.get_args(hints[name])):
            values[name] = _value(name, hints[name], v, w, required)
    return cls(**values)


def _value(name: str, hint: Any, v: Any, w: str, required: bool) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    json_list = typing.get_origin(hint) is tuple
    want = {str: str, int: int, bool: bool}.get(hint, list if json_list else dict)
    # bool is an int in Python: refuse it where a number is meant.
    ok = isinstance(v, want) and (want is bool or not isinstance(v, bool))
    what = {str: "a string", int: "an integer", bool: "true or false", list: "a JSON list"}
    _check(ok, w, f"expected {what.get(want, 'a JSON object')}, got {json.dumps(v)[:60]}")
    _check(not (required and isinstance(v, str) and not v.strip()), w, "must not be empty")
    rule, msg = _RULES.get(name, (bool, ""))
    _check(name not in _RULES or rule(v), w, msg.format(v))
    if hint is WeightSource:
        return _read(WeightSource, v, w)
    if name == "files":
        return tuple(_read(SourceFile, x, f"{w}[{i}]") for i, x in enumerate(v))
    return v


def _entry(obj: Any, w: str) -> ModelEntry:
    """One entry, its fields read and then related to each other."""
    e = _read(ModelEntry, obj, w)
    w, s = f"{w} ({e.name})", e.source
    try:
        e = dataclasses.replace(e, dims=AdcVSRDims.from_dict(e.dims))  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise _Invalid(f"{w}.dims: invalid network dims: {err}") from err
    scale = f"{e.scale} disagrees with the dims, which give x{e.dims.scale}"
    _check(e.scale == e.dims.scale, f"{w}.scale", scale)
    temporal = f"{json.dumps(e.temporal_blocks)} disagrees with dims.temporal"
    _check(e.temporal_blocks == e.dims.has_temporal, f"{w}.temporal_blocks", temporal)
    for key in ("repo_id", "revision"):
        missing = "missing: required for an available model"
        _check(getattr(s, key) or not e.available, f"{w}.source.{key}", missing)
    roles, want = [f.role for f in s.files], FORMATS[s.format]
    needs = f"format {s.format} needs files with roles {', '.join(want)}; got {', '.join(roles) or 'none'}"
    _check(sorted(roles) == sorted(want), f"{w}.source.files", needs)
    pickle = "adcsr-pickle sources hold the AdcSR network only (architecture adcsr)"
    _check(s.format != "adcsr-pickle" or e.architecture == "adcsr", f"{w}.source.format", pickle)
    native = s.format != "native" or s.files[0].path.endswith(".safetensors")
    _check(native, f"{w}.source.files[0].path", "a native file must end in .safetensors")
    return e


def load_registry(path: str | os.PathLike | None = None) -> Registry:
    """Read and check ``path``, else ``$ADCVSR_REGISTRY``, else the shipped ``weights.json``:
    ``{"schema_version": 1, "default": NAME, "models": [ModelEntry fields, ...]}``."""
    origin = Path(
        path or os.environ.get(REGISTRY_ENV) or str(resources.files(__package__) / "weights.json")
    )
    try:
        top = _read(_RegistryFile, json.loads(origin.read_text(encoding="utf-8")), "(top level)")
        newer = f"{top.schema_version} is newer than this adcvsr understands ({SCHEMA_VERSION})"
        _check(top.schema_version <= SCHEMA_VERSION, "schema_version", f"{newer}; upgrade adcvsr")
        models: dict[str, ModelEntry] = {}
        for i, raw in enumerate(top.models):
            entry = _entry(raw, f"models[{i}]")
            twice = f"duplicate model name {entry.name!r}"
            _check(entry.name not in models, f"models[{i}].name", twice)
            models[entry.name] = entry
        _check(models, "models", "lists no model")
        _check(top.default in models, "default", f"{top.default!r} names no model of this registry")
    except OSError as e:
        raise WeightsError(f"registry {origin}: cannot read it ({e.strerror or e})") from e
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise WeightsError(f"registry {origin}: not valid JSON: {e.msg} at {where}") from e
    except _Invalid as e:
        raise WeightsError(f"registry {origin}: {e}") from e
    return Registry(origin, top.schema_version, top.default, models)


def as_registry(registry: Registry | str | os.PathLike | None) -> Registry:
    return registry if isinstance(registry, Registry) else load_registry(registry)


def available_models(registry: Registry | str | os.PathLike | None = None) -> list[str]:
    """Names of the registry's models that can be downloaded now (released ones)."""
    return [n for n, e in as_registry(registry).models.items() if e.available]
