"""``--weights`` to a verified native file: registry names, ``hf://`` references, local paths.

Registry pickles are converted once into ``native/<name>-<key>.safetensors`` in the adcvsr cache
(the key: the sources' hashes and the dims), with its SHA-256 in a ``.sha256`` file beside it.
Events go to ``on_event`` as dicts with a ``type``: cache, download, verify, convert, notice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AdcvsrError, CheckpointError, WeightsError
from ..model import AdcVSRDims
from .convert import sha256_file
from .hub import Hub, HubRef, NotCachedError, OnEvent, fetch, known, parse_hub_ref
from .native import FORMAT_VERSION, atomic_write, read_native_header
from .registry import HUB_PREFIX, SHA256_RE, ModelEntry, Registry, SourceFile, as_registry

_PICKLE_SUFFIXES = (".pkl", ".ckpt", ".pt", ".pth", ".bin", ".pickle")


@dataclass(frozen=True)
class ResolvedWeights:
    """A verified native ``.safetensors`` file, ready for ``load_native``."""

    path: Path
    name: str | None
    dims: AdcVSRDims
    sha256: str
    origin: str  # "registry", "hub" or "local"
    source: str  # provenance, e.g. "adcsr-x4 (Guaishou74851/AdcSR@<commit>, converted)"
    from_cache: bool = False  # nothing was downloaded or converted
    sources: Mapping[str, str] = field(default_factory=dict)  # the sha256 of what it came from


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
    pinned: bool  # a commit is known: from the registry or from the first download
    pinned_by: str | None  # "registry", "first use" or None
    commit: str | None
    cached: bool  # a usable file is in the cache
    verified: bool  # ... and its sha256 was checked just now
    path: Path | None
    size_bytes: int  # the native file on disk
    source_bytes: int  # downloaded source files in the Hub cache
    detail: str = ""
    file_sha256: dict[str, str] = field(default_factory=dict)  # with commit: what a pin needs


@dataclass(frozen=True)
class DownloadResult:
    """What ``download`` did for one model."""

    name: str
    ok: bool
    weights: ResolvedWeights | None = None
    error: AdcvsrError | None = None


def resolve_weights(
    spec: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
    on_event: OnEvent | None = None,
    registry: Registry | str | os.PathLike | None = None,
    force: bool = False,
) -> ResolvedWeights:
    """``--weights`` (a registry name, None for the default; a local path; ``hf://``) to a
    verified native file. ``cache_dir`` holds everything, Hub downloads in ``hub/``;
    ``offline`` adds to ``HF_HUB_OFFLINE``; ``force`` fetches, converts and pins again."""
    hub, named = Hub.open(cache_dir, offline, on_event, force), _named(spec, registry)
    if isinstance(named, HubRef):
        return _from_hub_ref(hub, named)
    if isinstance(named, Path):
        path, dims = _local_dims(named)
        sha, full = sha256_file(path), path.resolve()
        return ResolvedWeights(full, None, dims, sha, "local", str(full), True, {str(full): sha})
    return _from_entry(hub, named)


def peek_dims(
    spec: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    registry: Registry | str | os.PathLike | None = None,
) -> AdcVSRDims | None:
    """The dims of the network ``spec`` names, from a registry entry, a local file's header or a
    cached ``hf://`` file's (None when not cached): no tensor loaded, no request made. Refuses
    what :func:`resolve_weights` refuses, with its message."""
    named = _named(spec, registry)
    if isinstance(named, HubRef):
        try:
            return _from_hub_ref(Hub.open(cache_dir, True, None), named).dims
        except NotCachedError:
            return None  # anything else (a bad hash, a foreign file) is refused as the run would
    if isinstance(named, Path):
        return _local_dims(named)[1]
    if not named.available:
        raise _unreleased(named)
    return named.dims


def _named(spec: str | os.PathLike | None, registry) -> HubRef | Path | ModelEntry:
    """What ``--weights`` names; a registry name wins over a file of that name (``./name``)."""
    if isinstance(spec, os.PathLike):
        return Path(spec)
    if spec and spec.startswith(HUB_PREFIX):
        return parse_hub_ref(spec)
    if spec and ("/" in spec or os.sep in spec or spec.startswith((".", "~"))):
        return Path(spec)
    if spec and spec.lower().endswith((".safetensors", *_PICKLE_SUFFIXES)):
        return Path(spec)
    reg = as_registry(registry)
    if spec and spec not in reg.models and Path(spec).is_file():
        return Path(spec)
    return reg.get(spec or reg.default)


def _header(path: Path, what: str | None = None):
    try:
        return read_native_header(path)
    except CheckpointError as e:
        raise WeightsError(f"{what}: {e}" if what else str(e)) from e


def _local_dims(path: Path) -> tuple[Path, AdcVSRDims]:
    """A local weights file (``~`` expanded) and its dims; refuses what is not a native file."""
    path = path.expanduser()
    if not path.exists():
        raise WeightsError(f"{path}: no such weights file")
    if path.is_dir():
        raise WeightsError(f"{path}: is a directory, not a .safetensors weights file")
    with open(path, "rb") as fh:
        head = fh.read(9)
    # A safetensors file starts with its header length (8 bytes, little-endian, so any first
    # byte, 0x80 included) and then "{": a pickle's signature counts only without that "{".
    pickled = head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"
    if path.suffix.lower() in _PICKLE_SUFFIXES or (pickled and head[8:9] != b"{"):
        raise WeightsError(
            f"{path}: a pickled PyTorch checkpoint; adcvsr never unpickles at run time. Convert the "
            "released AdcSR files once with `adcvsr convert`, or use --weights adcsr-x4"
        )
    return path, _header(path).dims


def _from_hub_ref(hub: Hub, ref: HubRef) -> ResolvedWeights:
    if not ref.path.endswith(".safetensors"):
        raise WeightsError(
            f"{ref}: only native .safetensors files are loaded from a Hub reference; released AdcSR "
            "pickles are fetched and converted through the registry (e.g. --weights adcsr-x4)"
        )
    if ref.legacy:
        hub.emit(
            type="notice", model=None, message=f"write {ref} (the Hub's form of the reference)"
        )
    if not ref.pinned_by_user:
        msg = f"{ref} names no @revision: using 'main', which is not pinned: it is pinned to its current commit on first use"
        hub.emit(type="notice", model=None, message=msg)
    commit, files, hit = fetch(hub, ref.repo_id, ref.revision, [SourceFile("w", ref.path)], None)
    path, sha = files[ref.path]
    source, dims = f"{HUB_PREFIX}{ref.repo_id}@{commit}/{ref.path}", _header(path, str(ref)).dims
    return ResolvedWeights(path, None, dims, sha, "hub", source, hit, {ref.path: sha})


def _from_entry(hub: Hub, entry: ModelEntry) -> ResolvedWeights:
    if not entry.available:
        raise _unreleased(entry)
    s, name = entry.source, entry.name
    assert s.repo_id and s.revision, "validated by load_registry"
    if s.format == "native":
        commit, files, hit = fetch(hub, s.repo_id, s.revision, s.files, name)
        ((p, (path, sha)),) = files.items()
        return _result(entry, path, sha, commit, {p: sha}, hit)
    cached = None if hub.force else _cached_conversion(hub, entry)
    if cached is not None and (good := _verified(hub, cached[2], name)):  # no network needed
        commit, sources, native = cached
        hub.emit(type="cache", status="hit", model=name, file=native.name, path=str(native))
        return _result(entry, native, good, commit, sources, True)
    commit, files, hit = fetch(hub, s.repo_id, s.revision, s.files, name)
    sources = {p: sha for p, (_, sha) in files.items()}
    native = _native_path(hub, entry, sources)
    try:
        native.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(f"cannot create the cache directory {native.parent}: {e}") from e
    from huggingface_hub.utils import WeakFileLock

    with WeakFileLock(native.parent / f".{native.stem}.lock"):  # one conversion; others wait
        done = None if hub.force else _verified(hub, native, name)
        sha = done or _convert(hub, entry, files, commit, native)
    return _result(entry, native, sha, commit, sources, hit and done is not None)


def _result(entry: ModelEntry, path: Path, sha, commit, sources, from_cache) -> ResolvedWeights:
    dims = _header(path, f"{entry.name}: {path.name}").dims
    if dims != entry.dims:
        raise WeightsError(
            f"{path}: the file's network dims differ from the registry entry {entry.name!r} "
            f"(file {dims.to_json()}, registry {entry.dims.to_json()})"
        )
    converted = ", converted" if entry.source.format == "adcsr-pickle" else ""
    source = f"{entry.name} ({entry.source.repo_id}@{commit}{converted})"
    return ResolvedWeights(path, entry.name, dims, sha, "registry", source, from_cache, sources)


def _unreleased(entry: ModelEntry) -> WeightsError:
    why = f" {entry.note}" if entry.note else ""
    return WeightsError(
        f"model {entry.name!r} is listed but not available yet.{why} Use one of the released models "
        f"(`adcvsr models`), or pass --weights PATH to a checkpoint you have."
    )


def _cached_conversion(hub: Hub, entry: ModelEntry) -> tuple[str, dict[str, str], Path] | None:
    """(commit, sources' sha256, where their conversion lives) when known without a request."""
    s = entry.source
    commit, expect, _ = known(hub, s.repo_id or "", s.revision or "", s.files)
    sources = {f.path: expect[f.path][0] for f in s.files if expect.get(f.path, (None,))[0]}
    if not commit or len(sources) < len(s.files):
        return None
    return commit, sources, _native_path(hub, entry, sources)


def _native_path(hub: Hub, entry: ModelEntry, sources: Mapping[str, str]) -> Path:
    """Where the conversion of these sources lives: the key changes with any hash or the dims."""
    by_role = {f.role: sources[f.path] for f in entry.source.files}
    key = {"sources": by_role, "dims": entry.dims.to_json(), "format_version": FORMAT_VERSION}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return hub.root / "native" / f"{entry.name}-{digest}.safetensors"


def _sidecar(native: Path) -> str | None:
    """The sha256 recorded beside a converted file."""
    try:
        first = Path(f"{native}.sha256").read_text(encoding="utf-8").split()
    except OSError:
        return None
    return first[0] if first and SHA256_RE.match(first[0]) else None


def _verified(hub: Hub, native: Path, model: str) -> str | None:
    """sha256 of a converted file that matches its record; a bad one is deleted (None)."""
    if not native.is_file():
        return None
    recorded = _sidecar(native)
    actual = sha256_file(native) if recorded else None
    if recorded and actual == recorded:
        return actual
    bad = {"path": str(native), "expected": recorded, "actual": actual}
    hub.emit(type="cache", status="corrupt", model=model, file=native.name, **bad)
    for p in (native, Path(f"{native}.sha256")):
        p.unlink(missing_ok=True)
    return None


def _convert(hub: Hub, entry: ModelEntry, files, commit: str, native: Path) -> str:
    """Convert the released pickles into ``native`` (atomically, its hash recorded beside it)."""
    from .convert import convert_adcsr

    s = entry.source
    hashes = {f.role: files[f.path][1] for f in s.files}
    src = " ".join(f"{role} sha256={sha}" for role, sha in sorted(hashes.items()))
    tmp = native.with_name(f".{native.stem}.{os.getpid()}.converting.safetensors")
    try:
        convert_adcsr(
            files[s.file("net_params").path][0],
            files[s.file("half_decoder").path][0],
            tmp,
            dims=entry.dims,
            source=f"{s.repo_id}@{commit} adcsr-pickle {src}",
            source_sha256=hashes,  # verified just now: no second hashing pass
            on_event=lambda ev: hub.emit(**{**ev, "model": entry.name}),
        )
        sha = sha256_file(tmp)  # the record first: a file without one would count as corrupt
        atomic_write(Path(f"{native}.sha256"), lambda t: t.write_text(f"{sha}  {native.name}\n"))
        os.replace(tmp, native)
    except CheckpointError as e:
        raise WeightsError(f"{entry.name}: the downloaded files could not be converted: {e}") from e
    except OSError as e:
        raise WeightsError(
            f"{entry.name}: cannot write the converted file under {native.parent}: {e}"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)
    return sha


def list_models(
    cache_dir: str | os.PathLike | None = None,
    *,
    registry: Registry | str | os.PathLike | None = None,
    verify: bool = True,
) -> list[ModelStatus]:
    """One row per registry entry, from the caches only (never the network); ``verify`` hashes
    each cached file (about 1 s per GB), else ``verified`` is False."""
    hub = Hub.open(cache_dir, True, None)
    return [_status(hub, e, verify) for e in as_registry(registry).models.values()]


def _status(hub: Hub, entry: ModelEntry, verify: bool) -> ModelStatus:
    s, revision = entry.source, entry.source.revision if entry.available else None
    commit, expect, pinned_by = known(hub, s.repo_id or "", revision or "", s.files)
    in_hub = [p for f in s.files if (p := hub.cached(s.repo_id or "", commit, f.path))]
    path = want = None
    converted = None if s.format == "native" else _cached_conversion(hub, entry)
    if s.format == "native" and in_hub:
        path, want = in_hub[0], expect.get(s.files[0].path, (None,))[0]
    elif converted and converted[2].is_file():
        path, want = converted[2], _sidecar(converted[2])
    verified, detail = False, "not downloaded" if entry.available else "not yet released"
    if path is None and s.format != "native" and entry.available and len(in_hub) == len(s.files):
        detail = "sources downloaded, not converted yet"
    elif path is not None and not verify:
        detail = "not checked"
    elif path is not None:
        actual = sha256_file(path)
        verified = want in (None, actual)
        corrupt = f"corrupt: sha256 {actual} != {want} (will be fetched or rebuilt)"
        detail = "verified" if verified else corrupt
    described = ("name", "description", "architecture", "scale", "parameters", "temporal_blocks")
    return ModelStatus(
        **{k: getattr(entry, k) for k in (*described, "license", "available")},
        pinned=commit is not None,
        pinned_by=pinned_by,
        commit=commit,
        cached=path is not None,
        verified=verified,
        path=path,
        size_bytes=path.stat().st_size if path is not None else 0,
        source_bytes=sum(p.stat().st_size for p in in_hub),
        detail=detail,
        file_sha256={p: sha for p, (sha, _) in expect.items() if sha},
    )


def download(
    names: Sequence[str] | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    on_event: OnEvent | None = None,
    registry: Registry | str | os.PathLike | None = None,
) -> list[DownloadResult]:
    """Fetch, verify and convert registry models (default: the default model). Unknown or
    unreleased names fail before any request; then each model succeeds or fails on its own."""
    reg = as_registry(registry)
    entries = [reg.get(n) for n in dict.fromkeys(names or [reg.default])]
    if unreleased := [e for e in entries if not e.available]:
        raise _unreleased(unreleased[0])
    hub, results = Hub.open(cache_dir, None, on_event, force), []
    for e in entries:
        try:
            results.append(DownloadResult(e.name, True, _from_entry(hub, e)))
        except AdcvsrError as err:
            results.append(DownloadResult(e.name, False, error=err))
    return results
