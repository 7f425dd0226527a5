"""Model registry, pinned and verified downloads from the Hugging Face Hub, conversion cache.

The registry is data: ``weights.json`` shipped inside the package (the repository's top-level
``weights.json`` is a link to it). Each entry names a network (architecture, scale, dims,
parameter count, licence) and where its weights come from: a Hub ``repo_id`` at a
``revision``, one or more files, and their format (``adcsr-pickle``: the released AdcSR pair of
pickles, converted once into a native file; ``native``: an adcvsr ``.safetensors`` file).

Where things live:

* Files downloaded from the Hub stay in the Hugging Face cache (``HF_HUB_CACHE`` /
  ``HF_HOME``), shared with other tools.
* The adcvsr cache (``ADCVSR_CACHE``, the ``cache_dir=`` argument, or ``~/.cache/adcvsr``)
  holds the converted native files (``native/<name>-<key>.safetensors``, keyed by the source
  hashes, with a ``.sha256`` file beside each) and the hashes seen at first download
  (``trust/*.json``) for files whose registry entry has no sha256 yet.

Integrity: every file is hashed (SHA-256, in chunks) before use and compared with, in this
order of precedence, the registry's sha256, the hash recorded at first download (trust on
first use) or the sha256 the Hub declares for LFS files (their ETag). A mismatch on a cached
file deletes it and fetches it again; a mismatch right after a download fetches it once more
(``force_download``), then raises :class:`~adcvsr_cli.errors.WeightsError` with both hashes.
Nothing is loaded before it is verified, and the Hub writes downloads to a temporary file that
is renamed only when complete.

Network: a short metadata request without retries (``HF_HUB_ETAG_TIMEOUT``, default 10 s)
comes first, so a network that is down fails in seconds, not after the Hub client's retry loop.
Offline (``offline=True`` or ``HF_HUB_OFFLINE=1``) only the caches are used. Cache hits make no
request at all.

Progress and notices go to an ``on_event`` callback as dicts with a ``"type"`` key:

* ``{"type": "cache", "status": "hit" | "corrupt", "model", "file", ...}``
* ``{"type": "download", "stage": "start" | "progress" | "done", "model", "file",
  "bytes", "total"}`` (``total`` may be None)
* ``{"type": "verify", "stage": "progress" | "done" | "mismatch", "model", "file", "bytes",
  "total", "expected", "actual"}``
* ``{"type": "convert", "stage": ..., "model", "file"}`` (from the converter)
* ``{"type": "notice", "model", "message"}`` and ``{"type": "hub-log", "level", "message"}``
  (warnings the Hub client would otherwise print)

The library never prints: the Hub's own progress bars and log output are kept quiet during our
calls and surface as these events instead.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ..errors import AdcvsrError, CheckpointError, WeightsError
from ..model import AdcVSRDims

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_MODEL",
    "FORMATS",
    "SCHEMA_VERSION",
    "DownloadResult",
    "HubRef",
    "ModelEntry",
    "ModelStatus",
    "Registry",
    "ResolvedWeights",
    "SourceFile",
    "WeightSource",
    "available_models",
    "default_cache_dir",
    "download",
    "hub_cache_dir",
    "list_models",
    "load_registry",
    "parse_hub_ref",
    "resolve_weights",
]

SCHEMA_VERSION = 1
ARCHITECTURES = ("adcsr", "adcvsr")
FORMATS = ("adcsr-pickle", "native")
DEFAULT_MODEL = "adcsr-x4"
REGISTRY_ENV = "ADCVSR_REGISTRY"
CACHE_ENV = "ADCVSR_CACHE"
HUB_PREFIX = "hf://"

_PICKLE_ROLES = ("net_params", "half_decoder")
_NATIVE_ROLE = "weights"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_PICKLE_SUFFIXES = (".pkl", ".ckpt", ".pt", ".pth", ".bin", ".pickle")
_HASH_CHUNK = 8 << 20
_HASH_EVENT_EVERY = 256 << 20
_DEFAULT_ETAG_TIMEOUT = 10.0

Event = dict[str, Any]
OnEvent = Callable[[Event], None]


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class SourceFile:
    """One file of a model's source: its path in the repo, role, and what we know of it."""

    role: str
    path: str
    size: int | None = None
    sha256: str | None = None
    note: str = ""


@dataclass(frozen=True)
class WeightSource:
    """Where a model's weights come from: a Hub repo at a revision, in a given format."""

    repo_id: str | None
    revision: str | None
    format: str
    files: tuple[SourceFile, ...]
    note: str = ""

    @property
    def pinned(self) -> bool:
        """True when the revision is a full commit hash (immutable)."""
        return bool(self.revision and _COMMIT_RE.match(self.revision))

    def file(self, role: str) -> SourceFile:
        for f in self.files:
            if f.role == role:
                return f
        raise KeyError(role)


@dataclass(frozen=True)
class ModelEntry:
    """One registry entry."""

    name: str
    description: str
    architecture: str
    scale: int
    dims: AdcVSRDims
    temporal_blocks: bool
    parameters: int
    license: str | None
    source: WeightSource
    available: bool = True
    note: str = ""
    license_note: str = ""


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
        try:
            return self.models[name]
        except KeyError:
            raise WeightsError(_unknown_name_message(name, self)) from None


def _unknown_name_message(name: str, registry: Registry) -> str:
    valid = ", ".join(
        n if e.available else f"{n} (not yet released)" for n, e in registry.models.items()
    )
    close = difflib.get_close_matches(name, registry.names, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown model {name!r}.{hint} Valid names: {valid}. "
        f"Or give a local .safetensors path, or {HUB_PREFIX}owner/repo/file.safetensors@revision."
    )


class _Fields:
    """Reads one JSON object, naming the offending field in every error."""

    def __init__(self, obj: Any, where: str, origin: Path) -> None:
        self.where, self.origin = where, origin
        if not isinstance(obj, dict):
            self.fail(f"expected a JSON object, got {type(obj).__name__}")
        self.obj: dict[str, Any] = obj

    def fail(self, msg: str, key: str | None = None) -> NoReturn:
        at = f"{self.where}.{key}" if key else self.where
        raise WeightsError(f"registry {self.origin}: {at}: {msg}")

    def _get(self, key: str, types: tuple[type, ...], what: str, *, required: bool, default: Any):
        if key not in self.obj:
            if required:
                self.fail("missing (required)", key)
            return default
        v = self.obj[key]
        if v is None and not required:
            return default
        # bool is an int in Python: refuse it where a number is meant.
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            self.fail(f"expected {what}, got {json.dumps(v)[:60]}", key)
        return v

    def text(self, key: str, *, required: bool = True, default: str | None = "") -> Any:
        v = self._get(key, (str,), "a string", required=required, default=default)
        if required and isinstance(v, str) and not v.strip():
            self.fail("must not be empty", key)
        return v

    def integer(self, key: str, *, required: bool = True, positive: bool = True) -> Any:
        v = self._get(key, (int,), "an integer", required=required, default=None)
        if v is not None and positive and v <= 0:
            self.fail(f"must be a positive integer, got {v}", key)
        return v

    def flag(self, key: str, *, required: bool = True, default: bool = False) -> bool:
        return self._get(key, (bool,), "true or false", required=required, default=default)

    def mapping(self, key: str) -> Any:
        return self._get(key, (dict,), "a JSON object", required=True, default=None)

    def array(self, key: str) -> Any:
        return self._get(key, (list,), "a JSON list", required=True, default=None)

    def nullable_str(self, key: str) -> str | None:
        if key not in self.obj:
            self.fail("missing (use null when unknown)", key)
        v = self.obj[key]
        if v is not None and not isinstance(v, str):
            self.fail(f"expected a string or null, got {json.dumps(v)[:60]}", key)
        return v

    def only(self, allowed: Sequence[str]) -> None:
        extra = [k for k in self.obj if k not in allowed and not k.startswith("$")]
        if extra:
            self.fail(f"unknown field (allowed: {', '.join(allowed)})", extra[0])


_ENTRY_FIELDS = (
    "name", "description", "architecture", "scale", "temporal_blocks", "parameters", "license",
    "license_note", "available", "note", "dims", "source",
)  # fmt: skip
_SOURCE_FIELDS = ("repo_id", "revision", "format", "files", "note")
_FILE_FIELDS = ("role", "path", "size", "sha256", "note")


def _parse_file(obj: Any, where: str, origin: Path) -> SourceFile:
    f = _Fields(obj, where, origin)
    f.only(_FILE_FIELDS)
    role = f.text("role")
    path = f.text("path")
    if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in path.split("/")):
        f.fail(f"must be a relative path inside the repo, got {path!r}", "path")
    size = f.integer("size", required=False)
    sha = f.nullable_str("sha256")
    if sha is not None and not _SHA256_RE.match(sha):
        f.fail(f"expected 64 lowercase hex digits or null, got {sha!r}", "sha256")
    return SourceFile(
        role=role, path=path, size=size, sha256=sha, note=f.text("note", required=False)
    )


def _parse_source(
    obj: Any, where: str, origin: Path, available: bool, architecture: str
) -> WeightSource:
    f = _Fields(obj, where, origin)
    f.only(_SOURCE_FIELDS)
    repo_id = f.nullable_str("repo_id")
    revision = f.nullable_str("revision")
    if available:
        if not repo_id:
            f.fail("required for an available model", "repo_id")
        if not revision:
            f.fail(
                "required for an available model (a 40-hex commit, or a branch with a note)",
                "revision",
            )
    if repo_id is not None and not _REPO_ID_RE.match(repo_id):
        f.fail(f"expected 'owner/name', got {repo_id!r}", "repo_id")
    fmt = f.text("format")
    if fmt not in FORMATS:
        f.fail(f"{fmt!r} is not one of {', '.join(FORMATS)}", "format")
    raw_files = f.array("files")
    files = tuple(_parse_file(x, f"{where}.files[{i}]", origin) for i, x in enumerate(raw_files))
    roles = [x.role for x in files]
    want = _PICKLE_ROLES if fmt == "adcsr-pickle" else (_NATIVE_ROLE,)
    if sorted(roles) != sorted(want):
        f.fail(
            f"format {fmt} needs files with roles {', '.join(want)}; got {', '.join(roles) or 'none'}",
            "files",
        )
    if fmt == "adcsr-pickle" and architecture != "adcsr":
        f.fail("adcsr-pickle sources hold the AdcSR network only (architecture adcsr)", "format")
    if fmt == "native" and not files[0].path.endswith(".safetensors"):
        f.fail(f"a native file must end in .safetensors, got {files[0].path!r}", "files[0].path")
    return WeightSource(
        repo_id=repo_id,
        revision=revision,
        format=fmt,
        files=files,
        note=f.text("note", required=False),
    )


def _parse_entry(obj: Any, where: str, origin: Path) -> ModelEntry:
    f = _Fields(obj, where, origin)
    f.only(_ENTRY_FIELDS)
    name = f.text("name")
    if not _NAME_RE.match(name):
        f.fail(f"{name!r}: use lowercase letters, digits, '.', '_' and '-'", "name")
    f.where = f"{where} ({name})"
    arch = f.text("architecture")
    if arch not in ARCHITECTURES:
        f.fail(f"{arch!r} is not one of {', '.join(ARCHITECTURES)}", "architecture")
    try:
        dims = AdcVSRDims.from_dict(f.mapping("dims"))
    except (TypeError, ValueError) as e:
        f.fail(f"invalid network dims: {e}", "dims")
    scale = f.integer("scale")
    if scale != dims.scale:
        f.fail(f"{scale} disagrees with the dims, which give x{dims.scale}", "scale")
    temporal = f.flag("temporal_blocks")
    if temporal != dims.has_temporal:
        f.fail(f"{str(temporal).lower()} disagrees with dims.temporal", "temporal_blocks")
    if arch == "adcsr" and temporal:
        f.fail("architecture adcsr has no temporal blocks", "temporal_blocks")
    available = f.flag("available", required=False, default=True)
    return ModelEntry(
        name=name,
        description=f.text("description"),
        architecture=arch,
        scale=scale,
        dims=dims,
        temporal_blocks=temporal,
        parameters=f.integer("parameters"),
        license=f.nullable_str("license"),
        source=_parse_source(f.mapping("source"), f"{f.where}.source", origin, available, arch),
        available=available,
        note=f.text("note", required=False),
        license_note=f.text("license_note", required=False),
    )


def _packaged_registry() -> Path:
    from importlib import resources

    return Path(str(resources.files("adcvsr_cli.weights").joinpath("weights.json")))


def load_registry(path: str | os.PathLike | None = None) -> Registry:
    """Read and validate a registry file.

    ``path`` defaults to ``$ADCVSR_REGISTRY``, else the ``weights.json`` shipped in the package.
    A missing or malformed file raises WeightsError naming the file and the offending field.

    Schema (version 1; keys starting with ``$`` are comments)::

        {"schema_version": 1, "default": NAME, "models": [ENTRY, ...]}
        ENTRY  = {"name": "[a-z0-9][a-z0-9._-]*", "description": str,
                  "architecture": "adcsr" | "adcvsr", "scale": int (= dims' scale),
                  "temporal_blocks": bool (= dims has temporal), "parameters": int,
                  "license": str | null, "license_note"?: str, "available"?: bool (true),
                  "note"?: str, "dims": AdcVSRDims JSON (model.AdcVSRDims.to_json),
                  "source": SOURCE}
        SOURCE = {"repo_id": "owner/name" | null, "revision": str | null (40-hex commit to pin),
                  "format": "adcsr-pickle" | "native", "files": [FILE, ...], "note"?: str}
        FILE   = {"role": str, "path": str (in the repo), "size": int | null,
                  "sha256": 64 hex | null, "note"?: str}

    ``adcsr-pickle`` needs the roles ``net_params`` and ``half_decoder`` (architecture adcsr);
    ``native`` needs one ``weights`` file ending in ``.safetensors``. ``repo_id`` and
    ``revision`` may be null only when ``available`` is false.
    """
    if path is None:
        path = os.environ.get(REGISTRY_ENV) or _packaged_registry()
    origin = Path(path)
    try:
        text = origin.read_text(encoding="utf-8")
    except OSError as e:
        raise WeightsError(f"registry {origin}: cannot read it ({e.strerror or e})") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise WeightsError(
            f"registry {origin}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from e
    top = _Fields(data, "(top level)", origin)
    top.only(("schema_version", "default", "models"))
    version = top.integer("schema_version")
    if version > SCHEMA_VERSION:
        top.fail(
            f"{version} is newer than this adcvsr understands ({SCHEMA_VERSION}); upgrade adcvsr",
            "schema_version",
        )
    models: dict[str, ModelEntry] = {}
    for i, raw in enumerate(top.array("models")):
        entry = _parse_entry(raw, f"models[{i}]", origin)
        if entry.name in models:
            top.fail(f"duplicate model name {entry.name!r}", f"models[{i}].name")
        models[entry.name] = entry
    if not models:
        top.fail("lists no model", "models")
    default = top.text("default")
    if default not in models:
        top.fail(f"{default!r} names no model of this registry", "default")
    return Registry(path=origin, schema_version=version, default=default, models=models)


def _registry(registry: Registry | str | os.PathLike | None) -> Registry:
    return registry if isinstance(registry, Registry) else load_registry(registry)


def available_models(registry: Registry | str | os.PathLike | None = None) -> list[str]:
    """Names of the registry's models that can be downloaded now (released ones)."""
    reg = _registry(registry)
    return [n for n, e in reg.models.items() if e.available]


# ----------------------------------------------------------------------------- places


def default_cache_dir() -> Path:
    """``$ADCVSR_CACHE``, else ``$XDG_CACHE_HOME/adcvsr``, else ``~/.cache/adcvsr``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "adcvsr"


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache, read from the environment now (as huggingface_hub does at import)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _offline_from_env() -> bool:
    v = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    if v.strip().upper() in ("1", "ON", "YES", "TRUE"):
        return True
    with contextlib.suppress(Exception):
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    return False


def _etag_timeout() -> float:
    with contextlib.suppress(ValueError):
        v = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 0)
        if v > 0:
            return v
    return _DEFAULT_ETAG_TIMEOUT


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ResolvedWeights:
    """A verified native ``.safetensors`` file, ready for ``checkpoint.load_native``."""

    path: Path
    name: str | None
    dims: AdcVSRDims
    sha256: str
    origin: str  # "registry", "hub" or "local"
    source: str  # human-readable provenance, e.g. "adcsr-x4 (Guaishou74851/AdcSR@main, converted)"
    from_cache: bool = False  # True when nothing was downloaded or converted
    # sha256 of the files it was made from, by path in the repo. A converted file's own
    # sha256 differs between conversions (safetensors writes its metadata in no fixed order);
    # these do not, so they are what to quote for provenance.
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``adcvsr models``."""

    name: str
    description: str
    architecture: str
    scale: int
    parameters: int
    temporal_blocks: bool
    license: str | None
    available: bool
    pinned: bool
    cached: bool  # a usable file is in the cache
    verified: bool  # ... and its sha256 was checked just now
    path: Path | None
    size_bytes: int  # the native file on disk
    source_bytes: int  # downloaded source files still in the Hub cache
    detail: str = ""


@dataclass(frozen=True)
class DownloadResult:
    """What ``download`` did for one model."""

    name: str
    ok: bool
    weights: ResolvedWeights | None = None
    error: AdcvsrError | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class HubRef:
    """A parsed ``hf://owner/repo/path@revision`` reference."""

    repo_id: str
    path: str
    revision: str
    pinned_by_user: bool = True

    def __str__(self) -> str:
        return f"{HUB_PREFIX}{self.repo_id}/{self.path}@{self.revision}"


def parse_hub_ref(ref: str) -> HubRef:
    """Parse ``hf://owner/repo/path/in/repo@revision`` (the revision defaults to ``main``)."""
    if not ref.startswith(HUB_PREFIX):
        raise WeightsError(
            f"{ref!r} is not a Hub reference (expected {HUB_PREFIX}owner/repo/path@revision)"
        )
    rest = ref[len(HUB_PREFIX) :]
    parts = rest.split("/", 2)
    if len(parts) < 3 or not parts[0] or not parts[1] or not parts[2]:
        raise WeightsError(
            f"{ref!r}: expected {HUB_PREFIX}owner/repo/path/to/file.safetensors@revision"
        )
    owner, repo, remainder = parts
    path, at, revision = remainder.rpartition("@")
    if not at:
        path, revision = remainder, ""
    repo_id = f"{owner}/{repo}"
    if not _REPO_ID_RE.match(repo_id):
        raise WeightsError(f"{ref!r}: {repo_id!r} is not a valid repo id")
    if not path or path.endswith("/") or any(p in ("", ".", "..") for p in path.split("/")):
        raise WeightsError(f"{ref!r}: {path!r} is not a file path inside the repo")
    if at and not revision:
        raise WeightsError(f"{ref!r}: empty revision after '@'")
    return HubRef(repo_id=repo_id, path=path, revision=revision or "main", pinned_by_user=bool(at))


# ----------------------------------------------------------------------------- context


@dataclass
class _Ctx:
    cache_dir: Path
    hub_cache: Path
    offline: bool
    endpoint: str | None
    force: bool
    on_event: OnEvent | None
    # Set for adcsr-pickle entries: their runnable file is the converted one in cache_dir.
    keeps_converted: bool = False

    def emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)


def _make_ctx(cache_dir, offline, on_event, force=False) -> _Ctx:
    return _Ctx(
        cache_dir=Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(),
        hub_cache=hub_cache_dir(),
        offline=_offline_from_env() if offline is None else bool(offline),
        endpoint=(os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None,
        force=force,
        on_event=on_event,
    )


def _endpoint_text(ctx: _Ctx) -> str:
    return ctx.endpoint or "https://huggingface.co"


# ----------------------------------------------------------------------------- hashing, files


def _sha256_file(path: Path, ctx: _Ctx | None = None, label: dict[str, Any] | None = None) -> str:
    h = hashlib.sha256()
    total = path.stat().st_size
    done = next_event = 0
    with open(path, "rb") as f:
        while block := f.read(_HASH_CHUNK):
            h.update(block)
            done += len(block)
            if ctx is not None and done >= next_event and total > _HASH_EVENT_EVERY:
                ctx.emit(
                    {
                        "type": "verify",
                        "stage": "progress",
                        **(label or {}),
                        "bytes": done,
                        "total": total,
                    }
                )
                next_event = done + _HASH_EVENT_EVERY
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    from .native import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _unlink(*paths: Path | str) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            os.unlink(p)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# ----------------------------------------------------------------------------- trust on first use


def _trust_path(ctx: _Ctx, repo_id: str, revision: str, path: str) -> Path:
    key = hashlib.sha256(f"{repo_id}\0{revision}\0{path}".encode()).hexdigest()[:32]
    return ctx.cache_dir / "trust" / f"{key}.json"


def _read_trust(ctx: _Ctx, repo_id: str, revision: str, path: str) -> dict[str, Any] | None:
    p = _trust_path(ctx, repo_id, revision, path)
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not _SHA256_RE.match(str(rec.get("sha256", ""))):
        return None
    rec["_record"] = str(p)
    return rec


def _write_trust(
    ctx: _Ctx, repo_id: str, revision: str, path: str, sha: str, size: int, commit: str | None
) -> None:
    old = _read_trust(ctx, repo_id, revision, path)
    if old is not None and old["sha256"] == sha:
        return
    rec = {
        "repo_id": repo_id,
        "revision": revision,
        "path": path,
        "sha256": sha,
        "size": size,
        "commit": commit,
        "first_seen": _now(),
    }
    with contextlib.suppress(OSError):  # a read-only cache still works, it just cannot remember
        _atomic_write_text(
            _trust_path(ctx, repo_id, revision, path), json.dumps(rec, indent=2) + "\n"
        )


@dataclass(frozen=True)
class _Expect:
    sha256: str | None
    why: str


def _expectation(
    registry_sha: str | None, trust: dict[str, Any] | None, etag: str | None
) -> _Expect:
    if registry_sha:
        return _Expect(registry_sha, "the registry")
    if trust is not None:
        return _Expect(
            trust["sha256"],
            f"recorded at first download on {trust.get('first_seen', '?')} (trust on first use; "
            f"record {trust['_record']})",
        )
    if etag and _SHA256_RE.match(etag):
        return _Expect(etag, "the Hub's LFS metadata (ETag)")
    return _Expect(None, "nothing (first download)")


# ----------------------------------------------------------------------------- the Hub


class _HubLogToEvents(logging.Handler):
    def __init__(self, ctx: _Ctx) -> None:
        super().__init__(level=logging.WARNING)
        self.ctx = ctx

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.ctx.emit(
                {
                    "type": "hub-log",
                    "level": record.levelname.lower(),
                    "message": record.getMessage(),
                }
            )


@contextlib.contextmanager
def _hub_quiet(ctx: _Ctx) -> Iterator[None]:
    """Route huggingface_hub's log output to events for the duration of a call."""
    logger = logging.getLogger("huggingface_hub")
    saved = (logger.handlers[:], logger.propagate)
    logger.handlers = [_HubLogToEvents(ctx)]
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved


def _progress_class(ctx: _Ctx, label: dict[str, Any]) -> type:
    """A stand-in for tqdm that the Hub client drives; it draws nothing and emits events."""

    class _Progress:
        def __init__(
            self, *args: Any, total: int | None = None, initial: int = 0, **kwargs: Any
        ) -> None:
            self.total, self.n = total, initial
            self.format_dict: dict[str, Any] = {}
            ctx.emit(
                {"type": "download", "stage": "start", **label, "bytes": initial, "total": total}
            )

        def update(self, n: int | float = 1) -> None:
            self.n += int(n)
            ctx.emit(
                {
                    "type": "download",
                    "stage": "progress",
                    **label,
                    "bytes": self.n,
                    "total": self.total,
                }
            )

        def update_transfer(self, n: int | float = 1) -> None:
            pass  # network bytes; ``update`` already counts the bytes written

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            pass

        set_transfer_postfix_str = set_postfix_str
        refresh = set_postfix_str
        set_description = set_postfix_str

        def close(self) -> None:
            pass

        def __enter__(self) -> _Progress:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.close()

    return _Progress


@dataclass(frozen=True)
class _Meta:
    commit: str
    etag: str
    size: int | None


def _describe(repo_id: str, revision: str, path: str) -> str:
    return f"{path} from {repo_id}@{revision}"


def _ways_out(ctx: _Ctx, model: str | None) -> str:
    """The two ways to run without the network, naming the cache that has to travel."""
    if model is not None and ctx.keeps_converted:
        fetch = f"run `adcvsr download {model}` on a connected machine and copy the adcvsr cache ({ctx.cache_dir}) over"
    else:
        fetch = (
            f"run {'`adcvsr download ' + model + '`' if model else 'the same command'} on a connected "
            f"machine and copy the Hugging Face cache ({ctx.hub_cache}) over"
        )
    return f"{fetch}, or pass --weights PATH to a local .safetensors file"


def _hub_error(
    e: BaseException, ctx: _Ctx, repo_id: str, revision: str, path: str, model: str | None
) -> WeightsError:
    """Turn a huggingface_hub / httpx2 / OS error into one clear WeightsError."""
    import httpx2
    from huggingface_hub import errors as hfe

    what = _describe(repo_id, revision, path)
    endpoint = _endpoint_text(ctx)
    cause = e
    if isinstance(e, hfe.LocalEntryNotFoundError) and e.__cause__ is not None:
        cause = e.__cause__  # the network error behind "not in the cache"
    if isinstance(cause, hfe.OfflineModeIsEnabled):
        return WeightsError(
            f"{what} is not in the cache and the Hub client is in offline mode (HF_HUB_OFFLINE): "
            + _ways_out(ctx, model)
        )
    if isinstance(cause, httpx2.TimeoutException):
        return WeightsError(
            f"the Hugging Face Hub at {endpoint} did not answer in time (HF_HUB_ETAG_TIMEOUT="
            f"{_etag_timeout():g} s) while fetching {what}: the network looks down or very slow. "
            f"Retry later, or work offline: {_ways_out(ctx, model)}"
        )
    if isinstance(
        cause, (httpx2.NetworkError, httpx2.ProxyError, httpx2.UnsupportedProtocol, ConnectionError)
    ):
        reason = str(cause).strip() or type(cause).__name__
        return WeightsError(
            f"cannot reach the Hugging Face Hub at {endpoint} to fetch {what}: the network is down "
            f"or the endpoint is wrong ({reason}). Check the connection (and HF_ENDPOINT), or work "
            f"offline: {_ways_out(ctx, model)}"
        )
    if isinstance(cause, hfe.GatedRepoError):
        return WeightsError(
            f"{repo_id} is gated: accept its terms on the Hub and set HF_TOKEN, then retry ({what})"
        )
    if isinstance(cause, hfe.RepositoryNotFoundError):
        return WeightsError(
            f"repository {repo_id} was not found on {endpoint} (or it is private: set HF_TOKEN) while fetching {what}"
        )
    if isinstance(cause, hfe.RevisionNotFoundError):
        return WeightsError(f"revision {revision!r} does not exist in {repo_id} (fetching {path})")
    if isinstance(cause, hfe.RemoteEntryNotFoundError):
        return WeightsError(f"file {path} does not exist in {repo_id} at revision {revision}")
    if isinstance(cause, hfe.HfHubHTTPError):
        status = cause.response.status_code if cause.response is not None else 0
        if status >= 500:
            kind = "a server error; retry later"
        elif status in (401, 403):
            kind = "access refused: private or gated repo? set HF_TOKEN"
        elif status == 404:
            kind = "not found: check the repo, revision and path, and HF_ENDPOINT"
        else:
            kind = "refused"
        return WeightsError(
            f"the Hub at {endpoint} answered HTTP {status or '?'} for {what} ({kind})"
        )
    if isinstance(cause, hfe.FileMetadataError):
        return WeightsError(
            f"{endpoint} does not answer like a Hugging Face Hub for {what} (check HF_ENDPOINT): {cause}"
        )
    if isinstance(cause, httpx2.HTTPError):
        return WeightsError(f"download of {what} from {endpoint} failed: {cause}")
    if isinstance(cause, OSError):
        detail = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        return WeightsError(f"download of {what} failed: {detail}")
    if isinstance(cause, ValueError):
        return WeightsError(f"invalid Hub request for {what}: {cause}")
    return WeightsError(f"download of {what} failed: {type(cause).__name__}: {cause}")


_HUB_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)


def _hub_exceptions() -> tuple[type[BaseException], ...]:
    import httpx2

    return (*_HUB_ERRORS, httpx2.HTTPError, httpx2.InvalidURL)


def _probe(ctx: _Ctx, repo_id: str, revision: str, path: str, model: str | None) -> _Meta:
    """One HEAD request without retries, so a dead network fails fast and clearly."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        url = hf_hub_url(repo_id, path, revision=revision, endpoint=ctx.endpoint)
        with _hub_quiet(ctx):
            meta = get_hf_file_metadata(
                url, timeout=_etag_timeout(), endpoint=ctx.endpoint, retry_on_errors=False
            )
    except _hub_exceptions() as e:
        raise _hub_error(e, ctx, repo_id, revision, path, model) from e
    if not meta.commit_hash or not meta.etag:
        missing = "X-Repo-Commit" if not meta.commit_hash else "ETag"
        raise WeightsError(
            f"{_endpoint_text(ctx)} answered without the {missing} header for "
            f"{_describe(repo_id, revision, path)}: it is not a Hugging Face Hub endpoint (check HF_ENDPOINT)"
        )
    return _Meta(commit=meta.commit_hash, etag=meta.etag, size=meta.size)


def _hub_download(
    ctx: _Ctx, repo_id: str, revision: str, path: str, model: str | None, force: bool
) -> Path:
    from huggingface_hub import hf_hub_download

    label = {"model": model, "file": path}
    try:
        with _hub_quiet(ctx):
            local = hf_hub_download(
                repo_id,
                path,
                revision=revision,
                cache_dir=str(ctx.hub_cache),
                endpoint=ctx.endpoint,
                force_download=force,
                tqdm_class=_progress_class(ctx, label),
            )
    except _hub_exceptions() as e:
        raise _hub_error(e, ctx, repo_id, revision, path, model) from e
    ctx.emit({"type": "download", "stage": "done", **label, "path": str(local)})
    return Path(str(local))


def _hub_cached(ctx: _Ctx, repo_id: str, revision: str, path: str) -> Path | None:
    """The file's path in the Hub cache, if there (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        p = try_to_load_from_cache(repo_id, path, cache_dir=str(ctx.hub_cache), revision=revision)
    except (ValueError, OSError):
        return None
    return Path(p) if isinstance(p, str) and os.path.isfile(p) else None


def _evict(pointer: Path) -> None:
    """Delete a cached Hub file: the blob the snapshot entry points to, then the entry."""
    with contextlib.suppress(OSError):
        blob = Path(os.path.realpath(pointer))
        if blob != pointer:
            _unlink(blob)
    _unlink(pointer)


def _blob_etag(pointer: Path) -> str | None:
    """The Hub cache names blobs after their ETag (the sha256 of LFS files)."""
    name = os.path.basename(os.path.realpath(pointer))
    return name if _SHA256_RE.match(name) else None


def _commit_of(pointer: Path) -> str | None:
    parent = pointer
    while parent.parent != parent:
        if parent.parent.name == "snapshots":
            return parent.name
        parent = parent.parent
    return None


def _fetch(
    ctx: _Ctx,
    *,
    repo_id: str,
    revision: str,
    file: SourceFile,
    model: str | None,
) -> tuple[Path, str, bool]:
    """A verified local copy of one Hub file: (path, sha256, came from the cache)."""
    label = {"model": model, "file": file.path}
    trust = _read_trust(ctx, repo_id, revision, file.path)

    if not ctx.force:
        local = _hub_cached(ctx, repo_id, revision, file.path)
        if local is not None:
            expect = _expectation(file.sha256, trust, _blob_etag(local))
            actual = _sha256_file(local, ctx, label)
            if expect.sha256 is None or actual == expect.sha256:
                _write_trust(
                    ctx,
                    repo_id,
                    revision,
                    file.path,
                    actual,
                    local.stat().st_size,
                    _commit_of(local),
                )
                ctx.emit({"type": "cache", "status": "hit", **label, "path": str(local)})
                return local, actual, True
            ctx.emit(
                {
                    "type": "cache",
                    "status": "corrupt",
                    **label,
                    "path": str(local),
                    "expected": expect.sha256,
                    "actual": actual,
                }
            )
            _evict(local)
            if ctx.offline:
                raise WeightsError(
                    f"the cached {_describe(repo_id, revision, file.path)} is corrupt (sha256 {actual}, "
                    f"expected {expect.sha256} from {expect.why}) and was deleted; offline mode is on, so it "
                    f"cannot be fetched again: {_ways_out(ctx, model)}"
                )

    if ctx.offline:
        raise WeightsError(
            f"{_describe(repo_id, revision, file.path)} is not in the Hub cache ({ctx.hub_cache}) and offline "
            f"mode is on: {_ways_out(ctx, model)}"
        )

    meta = _probe(ctx, repo_id, revision, file.path, model)
    if file.size is not None and meta.size is not None and meta.size != file.size:
        raise WeightsError(
            f"{_describe(repo_id, revision, file.path)}: the Hub reports {meta.size} bytes, the registry "
            f"expects {file.size}; refusing to download a different file"
        )
    if not _COMMIT_RE.match(revision):
        ctx.emit(
            {
                "type": "notice",
                "model": model,
                "message": f"{repo_id}@{revision} is not pinned to a commit (now {meta.commit}); "
                "the file's sha256 is checked against what was seen first",
            }
        )
    expect = _expectation(file.sha256, trust, meta.etag)
    actual = ""
    for attempt in (1, 2):
        local = _hub_download(
            ctx, repo_id, revision, file.path, model, force=ctx.force or attempt > 1
        )
        actual = _sha256_file(local, ctx, label)
        if expect.sha256 is None or actual == expect.sha256:
            _write_trust(
                ctx, repo_id, revision, file.path, actual, local.stat().st_size, meta.commit
            )
            ctx.emit({"type": "verify", "stage": "done", **label, "sha256": actual})
            return local, actual, False
        ctx.emit(
            {
                "type": "verify",
                "stage": "mismatch",
                **label,
                "attempt": attempt,
                "expected": expect.sha256,
                "actual": actual,
            }
        )
        _evict(local)
    hint = (
        " If the file changed upstream on purpose (the revision is not pinned), delete that record to accept it."
        if trust is not None and not file.sha256
        else ""
    )
    raise WeightsError(
        f"{_describe(repo_id, revision, file.path)} failed verification twice: expected sha256 "
        f"{expect.sha256} (from {expect.why}), got {actual}. The bad download was deleted.{hint}"
    )


# ----------------------------------------------------------------------------- native files


def _sidecar(native: Path) -> Path:
    return native.with_name(native.name + ".sha256")


def _read_sidecar(native: Path) -> str | None:
    try:
        first = _sidecar(native).read_text(encoding="utf-8").split()
    except OSError:
        return None
    return first[0] if first and _SHA256_RE.match(first[0]) else None


def _verified_native(ctx: _Ctx, native: Path, label: dict[str, Any]) -> str | None:
    """sha256 of a cached native file if it matches the hash recorded beside it; else evict it."""
    if not native.is_file():
        return None
    recorded = _read_sidecar(native)
    actual = _sha256_file(native, ctx, label) if recorded else None
    if recorded and actual == recorded:
        return actual
    ctx.emit(
        {
            "type": "cache",
            "status": "corrupt",
            **label,
            "path": str(native),
            "expected": recorded,
            "actual": actual,
        }
    )
    _unlink(native, _sidecar(native))
    return None


def _header(path: Path, what: str | None = None):
    from .native import read_native_header

    try:
        return read_native_header(path)
    except CheckpointError as e:
        raise WeightsError(f"{what}: {e}" if what else str(e)) from e


def _native_key(entry: ModelEntry, hashes: Mapping[str, str]) -> str:
    from .native import FORMAT_VERSION

    blob = json.dumps(
        {
            "sources": dict(sorted(hashes.items())),
            "dims": entry.dims.to_json(),
            "format_version": FORMAT_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _native_path(ctx: _Ctx, entry: ModelEntry, hashes: Mapping[str, str]) -> Path:
    return ctx.cache_dir / "native" / f"{entry.name}-{_native_key(entry, hashes)}.safetensors"


def _source_text(entry: ModelEntry, converted: bool) -> str:
    s = entry.source
    return f"{entry.name} ({s.repo_id}@{s.revision}{', converted' if converted else ''})"


def _convert(
    ctx: _Ctx, entry: ModelEntry, sources: Mapping[str, tuple[Path, str]], native: Path
) -> str:
    """Convert the released pickles into ``native`` (atomically, hash recorded beside it)."""
    from .convert import convert_adcsr

    tmp = native.with_name(f".{native.stem}.{os.getpid()}.converting.safetensors")
    hashes = {role: sha for role, (_, sha) in sources.items()}
    src = " ".join(f"{role} sha256={sha}" for role, sha in sorted(hashes.items()))

    def forward(ev: Event) -> None:
        ctx.emit({**ev, "model": entry.name})

    try:
        native.parent.mkdir(parents=True, exist_ok=True)
        convert_adcsr(
            sources["net_params"][0],
            sources["half_decoder"][0],
            tmp,
            dims=entry.dims,
            source=f"{entry.source.repo_id}@{entry.source.revision} adcsr-pickle {src}",
            source_sha256=hashes,  # verified just now: no second hashing pass
            on_event=forward,
        )
        sha = _sha256_file(tmp, ctx, {"model": entry.name, "file": native.name})
        _atomic_write_text(_sidecar(native), f"{sha}  {native.name}\n")
        os.replace(tmp, native)
    except CheckpointError as e:
        raise WeightsError(f"{entry.name}: the downloaded files could not be converted: {e}") from e
    except OSError as e:
        raise WeightsError(
            f"{entry.name}: cannot write the converted file under {native.parent}: {e}"
        ) from e
    finally:
        _unlink(tmp)
    return sha


# ----------------------------------------------------------------------------- resolution


def _known_source_hashes(ctx: _Ctx, entry: ModelEntry) -> dict[str, str] | None:
    s = entry.source
    out: dict[str, str] = {}
    for f in s.files:
        if f.sha256:
            out[f.role] = f.sha256
            continue
        rec = _read_trust(ctx, s.repo_id or "", s.revision or "", f.path)
        if rec is None:
            return None
        out[f.role] = rec["sha256"]
    return out


def _unreleased(entry: ModelEntry) -> WeightsError:
    why = f" {entry.note}" if entry.note else ""
    return WeightsError(
        f"model {entry.name!r} is listed but not available yet.{why} Use one of the released models "
        f"(`adcvsr models`), or pass --weights PATH to a checkpoint you have."
    )


def _check_dims(entry: ModelEntry, dims: AdcVSRDims, path: Path) -> None:
    if dims != entry.dims:
        raise WeightsError(
            f"{path}: the file's network dims differ from the registry entry {entry.name!r} "
            f"(file {dims.to_json()}, registry {entry.dims.to_json()})"
        )


def _result(
    path: Path,
    sha: str,
    dims: AdcVSRDims,
    *,
    name: str | None,
    origin: str,
    source: str,
    from_cache: bool,
    sources: Mapping[str, str],
) -> ResolvedWeights:
    return ResolvedWeights(
        path=path,
        name=name,
        dims=dims,
        sha256=sha,
        origin=origin,
        source=source,
        from_cache=from_cache,
        sources=dict(sources),
    )


def _resolve_entry(ctx: _Ctx, entry: ModelEntry) -> ResolvedWeights:
    if not entry.available:
        raise _unreleased(entry)
    s = entry.source
    assert s.repo_id and s.revision, "validated by load_registry"
    label = {"model": entry.name}

    if s.format == "native":
        f = s.file(_NATIVE_ROLE)
        path, sha, cached = _fetch(
            ctx, repo_id=s.repo_id, revision=s.revision, file=f, model=entry.name
        )
        header = _header(path, f"{entry.name}: {f.path}")
        _check_dims(entry, header.dims, path)
        return _result(
            path,
            sha,
            header.dims,
            name=entry.name,
            origin="registry",
            source=_source_text(entry, False),
            from_cache=cached,
            sources={f.path: sha},
        )

    def done(
        native: Path, sha: str, hashes: Mapping[str, str], from_cache: bool
    ) -> ResolvedWeights:
        header = _header(native, f"{entry.name}: {native.name}")
        _check_dims(entry, header.dims, native)
        by_path = {s.file(role).path: h for role, h in hashes.items()}
        return _result(
            native,
            sha,
            header.dims,
            name=entry.name,
            origin="registry",
            source=_source_text(entry, True),
            from_cache=from_cache,
            sources=by_path,
        )

    ctx.keeps_converted = True
    # adcsr-pickle: the converted file is keyed by the sources' hashes; when they are known
    # (registry or first download) a cached conversion is used without touching the network.
    known = None if ctx.force else _known_source_hashes(ctx, entry)
    if known is not None:
        native = _native_path(ctx, entry, known)
        hit = _verified_native(ctx, native, {**label, "file": native.name})
        if hit is not None:
            ctx.emit(
                {
                    "type": "cache",
                    "status": "hit",
                    **label,
                    "file": native.name,
                    "path": str(native),
                }
            )
            return done(native, hit, known, True)

    if ctx.offline:
        missing = [
            f.path for f in s.files if _hub_cached(ctx, s.repo_id, s.revision, f.path) is None
        ]
        if missing:
            raise WeightsError(
                f"model {entry.name!r} is not in the cache ({ctx.cache_dir}) and offline mode is on "
                f"(--offline or HF_HUB_OFFLINE=1): missing {' and '.join(missing)} from "
                f"{s.repo_id}@{s.revision}. Either {_ways_out(ctx, entry.name)}."
            )

    sources: dict[str, tuple[Path, str]] = {}
    all_cached = True
    for f in s.files:
        path, sha, cached = _fetch(
            ctx, repo_id=s.repo_id, revision=s.revision, file=f, model=entry.name
        )
        sources[f.role] = (path, sha)
        all_cached &= cached
    hashes = {role: sha for role, (_, sha) in sources.items()}
    native = _native_path(ctx, entry, hashes)
    # One conversion at a time per file: a second process waits, then finds it done.
    with _conversion_lock(native):
        verified = (
            None if ctx.force else _verified_native(ctx, native, {**label, "file": native.name})
        )
        if verified is not None:
            return done(native, verified, hashes, all_cached)
        return done(native, _convert(ctx, entry, sources, native), hashes, False)


@contextlib.contextmanager
def _conversion_lock(native: Path) -> Iterator[None]:
    from huggingface_hub.utils import WeakFileLock

    try:
        native.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(f"cannot create the cache directory {native.parent}: {e}") from e
    with WeakFileLock(native.parent / f".{native.stem}.lock"):
        yield


def _resolve_hub_ref(ctx: _Ctx, ref: HubRef) -> ResolvedWeights:
    if not ref.path.endswith(".safetensors"):
        raise WeightsError(
            f"{ref}: only native .safetensors files are loaded from a Hub reference; released AdcSR "
            "pickles are fetched and converted through the registry (e.g. --weights adcsr-x4)"
        )
    if not ref.pinned_by_user:
        ctx.emit(
            {
                "type": "notice",
                "model": None,
                "message": f"{ref} has no @revision: using 'main', which is not pinned",
            }
        )
    f = SourceFile(role=_NATIVE_ROLE, path=ref.path)
    path, sha, cached = _fetch(ctx, repo_id=ref.repo_id, revision=ref.revision, file=f, model=None)
    header = _header(path, str(ref))
    return _result(
        path,
        sha,
        header.dims,
        name=None,
        origin="hub",
        source=str(ref),
        from_cache=cached,
        sources={ref.path: sha},
    )


def _looks_like_path(spec: str) -> bool:
    return (
        "/" in spec
        or os.sep in spec
        or spec.startswith(".")
        or spec.startswith("~")
        or spec.lower().endswith((".safetensors", *_PICKLE_SUFFIXES))
    )


def _resolve_local(ctx: _Ctx, path: Path) -> ResolvedWeights:
    path = path.expanduser()
    if not path.exists():
        raise WeightsError(f"{path}: no such weights file")
    if path.is_dir():
        raise WeightsError(f"{path}: is a directory, not a .safetensors weights file")
    with open(path, "rb") as fh:
        head = fh.read(9)
    # A safetensors file starts with its header length (8 bytes, little-endian) and then "{";
    # that length's first byte can be anything, 0x80 included, so only look for a pickle's
    # signature when the file does not look like safetensors.
    looks_safetensors = head[8:9] == b"{"
    pickled = head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"
    if path.suffix.lower() in _PICKLE_SUFFIXES or (pickled and not looks_safetensors):
        raise WeightsError(
            f"{path}: a pickled PyTorch checkpoint; adcvsr never unpickles at run time. Convert the "
            "released AdcSR files once with `adcvsr convert`, or use --weights adcsr-x4"
        )
    header = _header(path)
    sha = _sha256_file(path, ctx, {"model": None, "file": str(path)})
    full = path.resolve()
    return _result(
        full,
        sha,
        header.dims,
        name=None,
        origin="local",
        source=str(full),
        from_cache=True,
        sources={str(full): sha},
    )


def resolve_weights(
    spec: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
    on_event: OnEvent | None = None,
    registry: Registry | str | os.PathLike | None = None,
    force: bool = False,
) -> ResolvedWeights:
    """Turn ``--weights`` into a verified native ``.safetensors`` file.

    ``spec`` is a registry name (None: the registry's default), a local ``.safetensors`` path,
    or ``hf://owner/repo/path@revision``. A registry name wins over a file of the same name in
    the current directory (write ``./name`` for the file). ``offline=None`` follows
    ``HF_HUB_OFFLINE``. ``force`` fetches and converts again even when the cache is good.
    Raises WeightsError, whose message names the file and the problem.
    """
    ctx = _make_ctx(cache_dir, offline, on_event, force)
    if isinstance(spec, os.PathLike):
        return _resolve_local(ctx, Path(spec))
    if spec is None or spec == "":
        reg = _registry(registry)
        return _resolve_entry(ctx, reg.get(reg.default))
    if spec.startswith(HUB_PREFIX):
        return _resolve_hub_ref(ctx, parse_hub_ref(spec))
    if _looks_like_path(spec):
        return _resolve_local(ctx, Path(spec))
    reg = _registry(registry)
    if spec not in reg.models and Path(spec).is_file():
        return _resolve_local(ctx, Path(spec))
    return _resolve_entry(ctx, reg.get(spec))


# ----------------------------------------------------------------------------- commands


def list_models(
    cache_dir: str | os.PathLike | None = None,
    *,
    registry: Registry | str | os.PathLike | None = None,
    verify: bool = True,
    on_event: OnEvent | None = None,
) -> list[ModelStatus]:
    """One status row per registry entry, from the caches only (never the network).

    ``verify`` hashes each cached file (about 1 s per GB); without it ``verified`` is False.
    """
    reg = _registry(registry)
    ctx = _make_ctx(cache_dir, True, on_event)
    rows = []
    for entry in reg.models.values():
        rows.append(_status(ctx, entry, verify))
    return rows


def _status(ctx: _Ctx, entry: ModelEntry, verify: bool) -> ModelStatus:
    s = entry.source

    def row(
        *,
        cached: bool = False,
        verified: bool = False,
        path: Path | None = None,
        source_bytes: int = 0,
        detail: str,
    ) -> ModelStatus:
        return ModelStatus(
            name=entry.name,
            description=entry.description,
            architecture=entry.architecture,
            scale=entry.scale,
            parameters=entry.parameters,
            temporal_blocks=entry.temporal_blocks,
            license=entry.license,
            available=entry.available,
            pinned=s.pinned,
            cached=cached,
            verified=verified,
            path=path,
            size_bytes=path.stat().st_size if path is not None else 0,
            source_bytes=source_bytes,
            detail=detail,
        )

    if not entry.available or not s.repo_id or not s.revision:
        return row(detail="not yet released")
    cached_sources = {f.role: _hub_cached(ctx, s.repo_id, s.revision, f.path) for f in s.files}
    label = {"model": entry.name}
    if s.format == "native":
        path = cached_sources[_NATIVE_ROLE]
        if path is None:
            return row(detail="not downloaded")
        if not verify:
            return row(cached=True, path=path, detail="not checked")
        f = s.file(_NATIVE_ROLE)
        trust = _read_trust(ctx, s.repo_id, s.revision, f.path)
        expect = _expectation(f.sha256, trust, _blob_etag(path))
        actual = _sha256_file(path, ctx, {**label, "file": f.path})
        ok = expect.sha256 is None or actual == expect.sha256
        detail = "verified" if ok else f"corrupt: sha256 {actual} != {expect.sha256}"
        return row(cached=True, verified=ok, path=path, detail=detail)

    source_bytes = sum(p.stat().st_size for p in cached_sources.values() if p is not None)
    known = _known_source_hashes(ctx, entry)
    native = _native_path(ctx, entry, known) if known is not None else None
    if native is None or not native.is_file():
        converted = all(cached_sources.values())
        detail = "sources downloaded, not converted yet" if converted else "not downloaded"
        return row(source_bytes=source_bytes, detail=detail)
    if not verify:
        return row(cached=True, path=native, source_bytes=source_bytes, detail="not checked")
    recorded = _read_sidecar(native)
    actual = _sha256_file(native, ctx, {**label, "file": native.name})
    ok = recorded == actual
    detail = (
        "verified" if ok else f"corrupt: sha256 {actual} != recorded {recorded} (will be rebuilt)"
    )
    return row(cached=True, verified=ok, path=native, source_bytes=source_bytes, detail=detail)


def download(
    names: Sequence[str] | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    on_event: OnEvent | None = None,
    registry: Registry | str | os.PathLike | None = None,
) -> list[DownloadResult]:
    """Fetch, verify and convert registry models (default: the registry's default model).

    Unknown or unreleased names raise WeightsError before anything is fetched. Each model then
    succeeds or fails on its own: a failure is reported in its result and the others go on.
    ``HF_HUB_OFFLINE=1`` turns this into a check of the cache.
    """
    reg = _registry(registry)
    wanted = list(dict.fromkeys(names)) if names else [reg.default]
    entries = [reg.get(n) for n in wanted]
    for e in entries:
        if not e.available:
            raise _unreleased(e)
    results = []
    for e in entries:
        t0 = time.perf_counter()
        try:
            w = resolve_weights(
                e.name, cache_dir=cache_dir, on_event=on_event, registry=reg, force=force
            )
        except AdcvsrError as err:
            results.append(DownloadResult(e.name, False, None, err, time.perf_counter() - t0))
        else:
            results.append(DownloadResult(e.name, True, w, None, time.perf_counter() - t0))
    return results
