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

    def get(self, name: str) -> ModelEntry:
        """The entry called ``name``; an unknown name raises WeightsError listing the valid ones."""
        if name in self.models:
            return self.models[name]
        valid = ", ".join(
            n if e.available else f"{n} (not yet released)" for n, e in self.models.items()
        )
        close = difflib.get_close_matches(name, list(self.models), n=1, cutoff=0.6)
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


class _Reader:
    """Checks JSON objects against dataclasses; a failure names the file, entry and field."""

    def __init__(self, origin: Path) -> None:
        self.origin = origin

    def check(self, ok: object, where: str, msg: str) -> None:
        if not ok:
            raise WeightsError(f"registry {self.origin}: {where}: {msg}")

    def fields(self, cls: type, obj: Any, where: str) -> dict[str, Any]:
        """``obj``'s values for ``cls``'s fields, each of the JSON type its hint names."""
        self.check(
            isinstance(obj, dict), where, f"expected a JSON object, got {json.dumps(obj)[:60]}"
        )
        allowed = [f.name for f in dataclasses.fields(cls)]
        for key in obj:
            self.check(
                key in allowed or key.startswith("$"),
                f"{where}.{key}",
                f"unknown field (allowed: {', '.join(allowed)})",
            )
        out, hints = {}, typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            w, v, required = f"{where}.{f.name}", obj.get(f.name), f.default is dataclasses.MISSING
            self.check(f.name in obj or not required, w, "missing (required)")
            hint, args = hints[f.name], typing.get_args(hints[f.name])
            if f.name not in obj or (v is None and type(None) in args):
                continue
            if typing.get_origin(hint) in (typing.Union, types.UnionType):
                hint = next(a for a in args if a is not type(None))
            want = {str: str, int: int, bool: bool}.get(
                hint, list if typing.get_origin(hint) is tuple else dict
            )
            name = {str: "a string", int: "an integer", bool: "true or false", list: "a JSON list"}
            # bool is an int in Python: refuse it where a number is meant.
            ok = isinstance(v, want) and (want is bool or not isinstance(v, bool))
            self.check(
                ok, w, f"expected {name.get(want, 'a JSON object')}, got {json.dumps(v)[:60]}"
            )
            self.check(not required or not isinstance(v, str) or v.strip(), w, "must not be empty")
            out[f.name] = v
        return out

    def one_of(self, where: str, value: str, allowed: Any) -> None:
        self.check(value in allowed, where, f"{value!r} is not one of {', '.join(allowed)}")


def _file(r: _Reader, obj: Any, w: str) -> SourceFile:
    f = SourceFile(**r.fields(SourceFile, obj, w))
    bad = f.path.startswith("/") or "\\" in f.path or {"", ".", ".."} & set(f.path.split("/"))
    r.check(not bad, f"{w}.path", f"must be a relative path inside the repo, got {f.path!r}")
    r.check(
        f.sha256 is None or SHA256_RE.match(f.sha256),
        f"{w}.sha256",
        f"expected 64 lowercase hex digits or null, got {f.sha256!r}",
    )
    r.check(f.size is None or f.size > 0, f"{w}.size", f"must be a positive integer, got {f.size}")
    return f


def _source(r: _Reader, obj: Any, w: str, entry: dict[str, Any]) -> WeightSource:
    raw = r.fields(WeightSource, obj, w)
    s = WeightSource(
        **raw | {"files": tuple(_file(r, x, f"{w}.files[{i}]") for i, x in enumerate(raw["files"]))}
    )
    for key in ("repo_id", "revision"):
        r.check(
            getattr(s, key) or not entry.get("available", True),
            f"{w}.{key}",
            "missing: required for an available model",
        )
    r.check(
        s.repo_id is None or REPO_ID_RE.match(s.repo_id),
        f"{w}.repo_id",
        f"expected 'owner/name', got {s.repo_id!r}",
    )
    r.one_of(f"{w}.format", s.format, FORMATS)
    roles, want = [f.role for f in s.files], FORMATS[s.format]
    r.check(
        sorted(roles) == sorted(want),
        f"{w}.files",
        f"format {s.format} needs files with roles {', '.join(want)}; got {', '.join(roles) or 'none'}",
    )
    r.check(
        s.format != "adcsr-pickle" or entry["architecture"] == "adcsr",
        f"{w}.format",
        "adcsr-pickle sources hold the AdcSR network only (architecture adcsr)",
    )
    native_ok = s.format != "native" or s.files[0].path.endswith(".safetensors")
    r.check(
        native_ok,
        f"{w}.files[0].path",
        f"a native file must end in .safetensors, got {s.files[0].path!r}",
    )
    return s


def _entry(r: _Reader, obj: Any, w: str) -> ModelEntry:
    raw = r.fields(ModelEntry, obj, w)
    name = raw["name"]
    r.check(
        _NAME_RE.match(name),
        f"{w}.name",
        f"{name!r}: use lowercase letters, digits, '.', '_' and '-'",
    )
    w = f"{w} ({name})"
    r.one_of(f"{w}.architecture", raw["architecture"], ARCHITECTURES)
    try:
        dims = raw["dims"] = AdcVSRDims.from_dict(raw["dims"])
    except (TypeError, ValueError) as e:
        raise WeightsError(f"registry {r.origin}: {w}.dims: invalid network dims: {e}") from e
    r.check(
        raw["scale"] == dims.scale,
        f"{w}.scale",
        f"{raw['scale']} disagrees with the dims, which give x{dims.scale}",
    )
    r.check(
        raw["temporal_blocks"] == dims.has_temporal,
        f"{w}.temporal_blocks",
        f"{json.dumps(raw['temporal_blocks'])} disagrees with dims.temporal",
    )
    r.check(
        raw["parameters"] > 0,
        f"{w}.parameters",
        f"must be a positive integer, got {raw['parameters']}",
    )
    return ModelEntry(**raw | {"source": _source(r, raw["source"], f"{w}.source", raw)})


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
    version, models = top["schema_version"], {}
    r.check(
        version <= SCHEMA_VERSION,
        "schema_version",
        f"{version} is newer than this adcvsr understands ({SCHEMA_VERSION}); upgrade adcvsr",
    )
    for i, raw in enumerate(top["models"]):
        entry = _entry(r, raw, f"models[{i}]")
        r.check(
            entry.name not in models, f"models[{i}].name", f"duplicate model name {entry.name!r}"
        )
        models[entry.name] = entry
    r.check(models, "models", "lists no model")
    r.check(
        top["default"] in models, "default", f"{top['default']!r} names no model of this registry"
    )
    return Registry(origin, version, top["default"], models)


def as_registry(registry: Registry | str | os.PathLike | None) -> Registry:
    return registry if isinstance(registry, Registry) else load_registry(registry)


def available_models(registry: Registry | str | os.PathLike | None = None) -> list[str]:
    """Names of the registry's models that can be downloaded now (released ones)."""
    return [n for n, e in as_registry(registry).models.items() if e.available]
