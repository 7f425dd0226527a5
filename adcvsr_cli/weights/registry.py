"""The model registry: ``weights.json`` read into frozen dataclasses, which are its schema.

Each JSON object is checked against its dataclass: unknown and missing fields, the JSON type
each type hint names, the rule a field carries (``_rule``); then a few rules relate fields.
Every error names the file, the entry and the field. Keys starting with ``$`` are comments.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


def _rule(ok: Callable[[Any], object], msg: str) -> dict[str, Any]:
    """A field's rule: its value must pass ``ok``; ``msg`` says what it must be (``{!r}``: it)."""
    return {"ok": ok, "msg": msg}


def _in_repo(path: str) -> bool:
    return not (path.startswith("/") or "\\" in path or {"", ".", ".."} & set(path.split("/")))


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# What each rule says when a value breaks it ({!r}: the value).
_POSITIVE = "must be a positive integer, got {!r}"
_SHA256 = "expected 64 lowercase hex digits or null, got {!r}"
_REPO_ID = "expected 'owner/name', got {!r}"
_NAME = "{!r}: use lowercase letters, digits, '.', '_' and '-'"
_ARCHITECTURE = "{!r} is not one of " + ", ".join(ARCHITECTURES)
_FORMATS = ", ".join(FORMATS)


@dataclass(frozen=True)
class SourceFile:
    """One file of a model's source: its role, its path in the repo, what we know of it."""

    role: str
    path: str = field(metadata=_rule(_in_repo, "must be a relative path inside the repo, got {!r}"))
    size: int | None = field(default=None, metadata=_rule(lambda n: n > 0, _POSITIVE))
    sha256: str | None = field(default=None, metadata=_rule(SHA256_RE.match, _SHA256))
    note: str = ""


@dataclass(frozen=True)
class WeightSource:
    """A Hub repo at a revision (a 40-hex commit pins it; a branch is pinned on first use)."""

    format: str = field(metadata=_rule(FORMATS.__contains__, f"{{!r}} is not one of {_FORMATS}"))
    files: tuple[SourceFile, ...]
    repo_id: str | None = field(default=None, metadata=_rule(REPO_ID_RE.match, _REPO_ID))
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

    name: str = field(metadata=_rule(_NAME_RE.match, _NAME))
    description: str
    architecture: str = field(metadata=_rule(ARCHITECTURES.__contains__, _ARCHITECTURE))
    scale: int
    temporal_blocks: bool
    parameters: int = field(metadata=_rule(lambda n: n > 0, _POSITIVE))
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


class _Reader:
    """Reads JSON objects into dataclasses; a failure names the file, entry and field."""

    def __init__(self, origin: Path) -> None:
        self.origin = origin

    def check(self, ok: object, where: str, msg: str) -> None:
        if not ok:
            raise WeightsError(f"registry {self.origin}: {where}: {msg}")

    def read(self, cls: Any, obj: Any, where: str) -> Any:
        """``cls`` from the JSON object ``obj`` (its ``files``/``source`` read in turn)."""
        self.check(
            isinstance(obj, dict), where, f"expected a JSON object, got {json.dumps(obj)[:60]}"
        )
        if cls is ModelEntry and isinstance(obj.get("name"), str):
            where = f"{where} ({obj['name']})"
        names = [f.name for f in dataclasses.fields(cls)]
        for key in obj:
            self.check(
                key in names or key.startswith("$"),
                f"{where}.{key}",
                f"unknown field (allowed: {', '.join(names)})",
            )
        values, hints = {}, typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            w, v = f"{where}.{f.name}", obj.get(f.name)
            self.check(
                f.name in obj or f.default is not dataclasses.MISSING, w, "missing (required)"
            )
            if f.name in obj and (
                v is not None or type(None) not in typing.get_args(hints[f.name])
            ):
                values[f.name] = self._value(f, hints[f.name], v, w)
        return cls(**values)

    def _value(self, f: dataclasses.Field, hint: Any, v: Any, w: str) -> Any:
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        want = {str: str, int: int, bool: bool}.get(
            hint, list if typing.get_origin(hint) is tuple else dict
        )
        # bool is an int in Python: refuse it where a number is meant.
        ok = isinstance(v, want) and (want is bool or not isinstance(v, bool))
        what = {str: "a string", int: "an integer", bool: "true or false", list: "a JSON list"}
        self.check(ok, w, f"expected {what.get(want, 'a JSON object')}, got {json.dumps(v)[:60]}")
        empty = f.default is dataclasses.MISSING and isinstance(v, str) and not v.strip()
        self.check(not empty, w, "must not be empty")
        self.check(
            "ok" not in f.metadata or f.metadata["ok"](v), w, f.metadata.get("msg", "").format(v)
        )
        if hint is WeightSource:
            return self.read(WeightSource, v, w)
        if f.name == "files":
            return tuple(self.read(SourceFile, x, f"{w}[{i}]") for i, x in enumerate(v))
        return v


def _entry(r: _Reader, obj: Any, w: str) -> ModelEntry:
    """One entry, its fields read and then related to each other."""
    e = r.read(ModelEntry, obj, w)
    w, s = f"{w} ({e.name})", e.source
    try:
        e = dataclasses.replace(e, dims=AdcVSRDims.from_dict(e.dims))  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise WeightsError(f"registry {r.origin}: {w}.dims: invalid network dims: {err}") from err
    r.check(
        e.scale == e.dims.scale,
        f"{w}.scale",
        f"{e.scale} disagrees with the dims, which give x{e.dims.scale}",
    )
    r.check(
        e.temporal_blocks == e.dims.has_temporal,
        f"{w}.temporal_blocks",
        f"{json.dumps(e.temporal_blocks)} disagrees with dims.temporal",
    )
    for key in ("repo_id", "revision"):
        r.check(
            getattr(s, key) or not e.available,
            f"{w}.source.{key}",
            "missing: required for an available model",
        )
    roles, want = [f.role for f in s.files], FORMATS[s.format]
    r.check(
        sorted(roles) == sorted(want),
        f"{w}.source.files",
        f"format {s.format} needs files with roles {', '.join(want)}; got {', '.join(roles) or 'none'}",
    )
    r.check(
        s.format != "adcsr-pickle" or e.architecture == "adcsr",
        f"{w}.source.format",
        "adcsr-pickle sources hold the AdcSR network only (architecture adcsr)",
    )
    r.check(
        s.format != "native" or s.files[0].path.endswith(".safetensors"),
        f"{w}.source.files[0].path",
        "a native file must end in .safetensors",
    )
    return e


def load_registry(path: str | os.PathLike | None = None) -> Registry:
    """Read and check ``path``, else ``$ADCVSR_REGISTRY``, else the shipped ``weights.json``.

    ``{"schema_version": 1, "default": NAME, "models": [ModelEntry fields, ...]}``; a missing or
    malformed file raises WeightsError naming the field.
    """
    origin = Path(
        path or os.environ.get(REGISTRY_ENV) or str(resources.files(__package__) / "weights.json")
    )
    try:
        data = json.loads(origin.read_text(encoding="utf-8"))
    except OSError as e:
        raise WeightsError(f"registry {origin}: cannot read it ({e.strerror or e})") from e
    except json.JSONDecodeError as e:
        raise WeightsError(
            f"registry {origin}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from e
    r = _Reader(origin)
    top = r.read(_RegistryFile, data, "(top level)")
    r.check(
        top.schema_version <= SCHEMA_VERSION,
        "schema_version",
        f"{top.schema_version} is newer than this adcvsr understands ({SCHEMA_VERSION}); upgrade adcvsr",
    )
    models: dict[str, ModelEntry] = {}
    for i, raw in enumerate(top.models):
        entry = _entry(r, raw, f"models[{i}]")
        r.check(
            entry.name not in models, f"models[{i}].name", f"duplicate model name {entry.name!r}"
        )
        models[entry.name] = entry
    r.check(models, "models", "lists no model")
    r.check(top.default in models, "default", f"{top.default!r} names no model of this registry")
    return Registry(origin, top.schema_version, top.default, models)


def as_registry(registry: Registry | str | os.PathLike | None) -> Registry:
    return registry if isinstance(registry, Registry) else load_registry(registry)


def available_models(registry: Registry | str | os.PathLike | None = None) -> list[str]:
    """Names of the registry's models that can be downloaded now (released ones)."""
    return [n for n, e in as_registry(registry).models.items() if e.available]
