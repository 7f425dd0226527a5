"""The model registry: ``weights.json`` read into frozen dataclasses, which are its schema.

Each JSON object is checked against its dataclass's fields and type hints, then a few rules
relate fields; every error names the file, the entry and the field. ``$`` keys are comments.
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
from typing import Any, NoReturn

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
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class SourceFile:
    """One file of a model's source: its path in the repo, its role, and what we know of it."""

    role: str
    path: str
    size: int | None = None
    sha256: str | None = None
    note: str = ""


@dataclass(frozen=True)
class WeightSource:
    """Where a model's weights come from: a Hub repo at a revision, in a given format."""

    format: str
    files: tuple[SourceFile, ...]
    repo_id: str | None = None
    revision: str | None = None  # a 40-hex commit pins it; a branch is pinned on first use
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

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def get(self, name: str) -> ModelEntry:
        """The entry called ``name``; an unknown name raises WeightsError listing the valid ones."""
        if name in self.models:
            return self.models[name]
        valid = ", ".join(
            n if e.available else f"{n} (not yet released)" for n, e in self.models.items()
        )
        close = difflib.get_close_matches(name, self.names, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise WeightsError(
            f"unknown model {name!r}.{hint} Valid names: {valid}. Or give a local .safetensors "
            f"path, or {HUB_PREFIX}owner/repo@revision/file.safetensors."
        )


@dataclass(frozen=True)
class _RegistryFile:
    schema_version: int
    default: str
    models: tuple[Any, ...]


# ----------------------------------------------------------------------------- reading


class _Reader:
    """Checks JSON objects against dataclasses; ``fail`` names the file, entry and field."""

    def __init__(self, origin: Path) -> None:
        self.origin = origin

    def fail(self, where: str, msg: str) -> NoReturn:
        raise WeightsError(f"registry {self.origin}: {where}: {msg}")

    def fields(self, cls: type, obj: Any, where: str) -> dict[str, Any]:
        """``obj``'s values for ``cls``'s fields (defaults filled in), typed as the hints say."""
        if not isinstance(obj, dict):
            self.fail(where, f"expected a JSON object, got {json.dumps(obj)[:60]}")
        hints = typing.get_type_hints(cls)
        allowed = [f.name for f in dataclasses.fields(cls)]
        for key in obj:
            if key not in allowed and not key.startswith("$"):
                self.fail(f"{where}.{key}", f"unknown field (allowed: {', '.join(allowed)})")
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in obj:
                if f.default is dataclasses.MISSING:
                    self.fail(f"{where}.{f.name}", "missing (required)")
                continue
            out[f.name] = v = self._typed(obj[f.name], hints[f.name], f"{where}.{f.name}")
            if f.default is dataclasses.MISSING and isinstance(v, str) and not v.strip():
                self.fail(f"{where}.{f.name}", "must not be empty")
        return out

    def _typed(self, value: Any, hint: Any, where: str) -> Any:
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
            if value is None:
                return None
            hint = next(a for a in args if a is not type(None))
        json_type = {str: str, int: int, bool: bool}.get(typing.get_origin(hint) or hint)
        json_type = json_type or (list if typing.get_origin(hint) is tuple else dict)
        what = {str: "a string", int: "an integer", bool: "true or false", list: "a JSON list"}
        # bool is an int in Python: refuse it where a number is meant.
        if not isinstance(value, json_type) or (isinstance(value, bool) and json_type is not bool):
            self.fail(
                where,
                f"expected {what.get(json_type, 'a JSON object')}, got {json.dumps(value)[:60]}",
            )
        return value

    def one_of(self, where: str, value: str, allowed: Any) -> None:
        if value not in allowed:
            self.fail(where, f"{value!r} is not one of {', '.join(allowed)}")


def _file(r: _Reader, obj: Any, where: str) -> SourceFile:
    f = SourceFile(**r.fields(SourceFile, obj, where))
    if (
        f.path.startswith("/")
        or "\\" in f.path
        or any(p in ("", ".", "..") for p in f.path.split("/"))
    ):
        r.fail(f"{where}.path", f"must be a relative path inside the repo, got {f.path!r}")
    if f.sha256 is not None and not SHA256_RE.match(f.sha256):
        r.fail(f"{where}.sha256", f"expected 64 lowercase hex digits or null, got {f.sha256!r}")
    if f.size is not None and f.size <= 0:
        r.fail(f"{where}.size", f"must be a positive integer, got {f.size}")
    return f


def _source(r: _Reader, obj: Any, where: str, entry: dict[str, Any]) -> WeightSource:
    raw = r.fields(WeightSource, obj, where)
    raw["files"] = tuple(_file(r, x, f"{where}.files[{i}]") for i, x in enumerate(raw["files"]))
    s = WeightSource(**raw)
    if entry.get("available", True):
        for key in ("repo_id", "revision"):
            if not getattr(s, key):
                r.fail(f"{where}.{key}", "missing: required for an available model")
    if s.repo_id is not None and not REPO_ID_RE.match(s.repo_id):
        r.fail(f"{where}.repo_id", f"expected 'owner/name', got {s.repo_id!r}")
    r.one_of(f"{where}.format", s.format, FORMATS)
    roles, want = [f.role for f in s.files], FORMATS[s.format]
    if sorted(roles) != sorted(want):
        got = ", ".join(roles) or "none"
        r.fail(
            f"{where}.files",
            f"format {s.format} needs files with roles {', '.join(want)}; got {got}",
        )
    if s.format == "adcsr-pickle" and entry["architecture"] != "adcsr":
        r.fail(
            f"{where}.format",
            "adcsr-pickle sources hold the AdcSR network only (architecture adcsr)",
        )
    if s.format == "native" and not s.files[0].path.endswith(".safetensors"):
        r.fail(
            f"{where}.files[0].path",
            f"a native file must end in .safetensors, got {s.files[0].path!r}",
        )
    return s


def _entry(r: _Reader, obj: Any, where: str) -> ModelEntry:
    raw = r.fields(ModelEntry, obj, where)
    name = raw["name"]
    if not _NAME_RE.match(name):
        r.fail(f"{where}.name", f"{name!r}: use lowercase letters, digits, '.', '_' and '-'")
    where = f"{where} ({name})"
    r.one_of(f"{where}.architecture", raw["architecture"], ARCHITECTURES)
    try:
        dims = raw["dims"] = AdcVSRDims.from_dict(raw["dims"])
    except (TypeError, ValueError) as e:
        r.fail(f"{where}.dims", f"invalid network dims: {e}")
    if raw["scale"] != dims.scale:
        r.fail(
            f"{where}.scale", f"{raw['scale']} disagrees with the dims, which give x{dims.scale}"
        )
    if raw["temporal_blocks"] != dims.has_temporal:
        r.fail(
            f"{where}.temporal_blocks",
            f"{json.dumps(raw['temporal_blocks'])} disagrees with dims.temporal",
        )
    if raw["parameters"] <= 0:
        r.fail(f"{where}.parameters", f"must be a positive integer, got {raw['parameters']}")
    raw["source"] = _source(r, raw["source"], f"{where}.source", raw)
    return ModelEntry(**raw)


def load_registry(path: str | os.PathLike | None = None) -> Registry:
    """Read and check ``path``, else ``$ADCVSR_REGISTRY``, else the shipped ``weights.json``.

    ``{"schema_version": 1, "default": NAME, "models": [ModelEntry fields, ...]}``; a missing or
    malformed file raises WeightsError naming the field.
    """
    shipped = resources.files(__package__).joinpath("weights.json")
    origin = Path(path or os.environ.get(REGISTRY_ENV) or str(shipped))
    try:
        data = json.loads(origin.read_text(encoding="utf-8"))
    except OSError as e:
        raise WeightsError(f"registry {origin}: cannot read it ({e.strerror or e})") from e
    except json.JSONDecodeError as e:
        raise WeightsError(
            f"registry {origin}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from e
    r = _Reader(origin)
    top = r.fields(_RegistryFile, data, "(top level)")
    version = top["schema_version"]
    if version > SCHEMA_VERSION:
        r.fail(
            "schema_version",
            f"{version} is newer than this adcvsr understands ({SCHEMA_VERSION}); upgrade adcvsr",
        )
    models: dict[str, ModelEntry] = {}
    for i, raw in enumerate(top["models"]):
        entry = _entry(r, raw, f"models[{i}]")
        if entry.name in models:
            r.fail(f"models[{i}].name", f"duplicate model name {entry.name!r}")
        models[entry.name] = entry
    if not models:
        r.fail("models", "lists no model")
    default = top["default"]
    if default not in models:
        r.fail("default", f"{default!r} names no model of this registry")
    return Registry(path=origin, schema_version=version, default=default, models=models)


def as_registry(registry: Registry | str | os.PathLike | None) -> Registry:
    return registry if isinstance(registry, Registry) else load_registry(registry)


def available_models(registry: Registry | str | os.PathLike | None = None) -> list[str]:
    """Names of the registry's models that can be downloaded now (released ones)."""
    return [n for n, e in as_registry(registry).models.items() if e.available]
