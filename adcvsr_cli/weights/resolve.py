"""``--weights`` to a verified native file: registry names, Hub references and local paths.

Every file is hashed (SHA-256) before use and compared with, in this order, the registry's
sha256, the one pinned at the first download, or the one the Hub declares for LFS files. A
cached file that does not match is fetched again once (``force_download``), a fresh download
that does not match once more; then it is an error naming both hashes. A registry entry that
names a branch is pinned on first use: its commit and its files' hashes are recorded in the
adcvsr cache, and later runs use them without a request.

Progress and notices go to ``on_event`` as dicts with a ``"type"`` key: ``cache`` (``status``
hit or corrupt), ``download`` (``stage`` start, progress, done; ``bytes``, ``total``),
``verify`` (``stage`` progress, done, mismatch), ``convert`` (from the converter) and
``notice``. huggingface_hub's own log records go to its logger, for the application to show.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AdcvsrError, CheckpointError, WeightsError
from ..model import AdcVSRDims
from . import hub as H
from .cache import (
    conversion_lock,
    default_cache_dir,
    native_path,
    read_pin,
    read_sidecar,
    sha256_file,
    verified_native,
    write_pin,
    write_text,
)
from .registry import COMMIT_RE, HUB_PREFIX, ModelEntry, Registry, SourceFile, as_registry

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
    from_cache: bool = False  # True when nothing was downloaded or converted
    # sha256 of the files it was made from, by path. A converted file's own hash differs between
    # conversions (safetensors writes metadata in no fixed order); these do not.
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
    pinned: bool  # a commit is known: from the registry or from the first download
    pinned_by: str | None  # "registry", "first use" or None
    commit: str | None
    cached: bool  # a usable file is in the cache
    verified: bool  # ... and its sha256 was checked just now
    path: Path | None
    size_bytes: int  # the native file on disk
    source_bytes: int  # downloaded source files in the Hub cache
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
class _Ctx:
    cache_dir: Path
    hub: H.Hub
    force: bool

    def emit(self, event: dict) -> None:
        self.hub.emit(event)


def _make_ctx(cache_dir, offline, on_event, force=False) -> _Ctx:
    from huggingface_hub import constants

    # --cache-dir holds everything (Hub downloads in DIR/hub); else each tool's own cache.
    root = Path(cache_dir).expanduser() if cache_dir is not None else None
    hub = H.Hub(
        cache_dir=root / "hub" if root is not None else None,
        offline=bool(offline) or constants.is_offline_mode(),
        on_event=on_event,
    )
    return _Ctx(root or default_cache_dir(), hub, force)


# ----------------------------------------------------------------------------- Hub files


@dataclass(frozen=True)
class _Expect:
    sha256: str | None
    why: str


@dataclass(frozen=True)
class _Plan:
    commit: str | None  # None: not pinned yet
    expect: Mapping[str, _Expect]
    pinned_by: str | None


def _plan(ctx: _Ctx, repo_id: str, revision: str, files: Sequence[SourceFile]) -> _Plan:
    """The commit and hashes known without a request: the registry's, else the pin's."""
    pin = None if ctx.force else read_pin(ctx.cache_dir, repo_id, revision)
    expect = {f.path: _Expect(f.sha256, "the registry") for f in files if f.sha256}
    if pin is not None:
        why = f"the pin made at the first download on {pin.pinned_at} (record {pin.record})"
        expect |= {p: _Expect(h, why) for p, h in pin.files.items() if p not in expect}
    if COMMIT_RE.match(revision):
        return _Plan(revision, expect, "registry")
    return _Plan(pin.commit if pin else None, expect, "first use" if pin else None)


def _complete(
    ctx: _Ctx, repo_id: str, revision: str, files: Sequence[SourceFile], plan: _Plan, model
) -> _Plan:
    """Fill in what the plan lacks (commit, hashes) from the Hub's metadata: one request."""
    missing = [f.path for f in files if f.path not in plan.expect]
    if plan.commit is not None and (not missing or ctx.hub.offline):
        # Offline, a file with no known hash is taken as cached and pinned now.
        return _Plan(
            plan.commit,
            {**{p: _Expect(None, "nothing") for p in missing}, **plan.expect},
            plan.pinned_by,
        )
    if ctx.hub.offline:
        what = " and ".join(f.path for f in files)
        raise WeightsError(
            f"{what} from {repo_id}@{revision} is not in the cache and offline mode is on "
            f"(the revision is not pinned yet): {H.ways_out(ctx.hub, model, 'the caches')}"
        )
    commit, declared = H.declared(ctx.hub, repo_id, plan.commit or revision, model)
    if plan.commit is None:
        old = read_pin(ctx.cache_dir, repo_id, revision)
        moved = f" (it was {old.commit})" if old is not None and old.commit != commit else ""
        ctx.emit({"type": "notice", "model": model, "message": f"{repo_id}@{revision} is not pinned to a commit: "
                  f"pinning it to {commit}{moved} on first use, with the sha256 of each file"})  # fmt: skip
    lfs = {p: _Expect(declared[p], "the Hub's LFS metadata") for p in missing if p in declared}
    rest = {p: _Expect(None, "nothing (first download)") for p in missing if p not in declared}
    return _Plan(commit, {**rest, **lfs, **plan.expect}, plan.pinned_by or "first use")


def _fetch(
    ctx: _Ctx, repo_id: str, commit: str, path: str, expect: _Expect, model
) -> tuple[Path, str, bool]:
    """A verified local copy of one Hub file: (path, sha256, came from the cache)."""
    label, what = {"model": model, "file": path}, f"{path} from {repo_id}@{commit}"
    cached = not ctx.force and H.cached_path(ctx.hub, repo_id, commit, path) is not None
    if ctx.hub.offline and not cached:
        out = H.ways_out(ctx.hub, model, f"the Hugging Face cache ({ctx.hub.cache_text})")
        raise WeightsError(f"{what} is not in the Hub cache and offline mode is on: {out}")
    force, local, sha = ctx.force, Path(), ""
    for attempt in (1, 2):
        local = H.download(ctx.hub, repo_id, commit, path, model, force=force)
        sha = sha256_file(local, ctx.emit, label)
        fresh = force or not cached
        if expect.sha256 in (None, sha):
            if fresh:
                ctx.emit({"type": "download", "stage": "done", **label, "path": str(local)})
            ctx.emit({"type": "verify", "stage": "done", **label, "sha256": sha} if fresh else
                     {"type": "cache", "status": "hit", **label, "path": str(local)})  # fmt: skip
            return local, sha, not fresh
        bad = {"expected": expect.sha256, "actual": sha, "path": str(local)}
        ctx.emit({"type": "verify", "stage": "mismatch", **label, "attempt": attempt, **bad} if fresh else
                 {"type": "cache", "status": "corrupt", **label, **bad})  # fmt: skip
        if ctx.hub.offline:
            out = H.ways_out(ctx.hub, model, f"the Hugging Face cache ({ctx.hub.cache_text})")
            raise WeightsError(
                f"the cached {what} is corrupt (sha256 {sha}, expected {expect.sha256} from "
                f"{expect.why}); offline mode is on, so it cannot be fetched again: {out}"
            )
        force = True
    H.evict(ctx.hub, local)
    raise WeightsError(
        f"{what} failed verification twice: expected sha256 {expect.sha256} (from {expect.why}), "
        f"got {sha}. The bad download was deleted."
    )


@dataclass(frozen=True)
class _Fetched:
    commit: str
    files: Mapping[str, tuple[Path, str]]  # path in the repo -> (local path, sha256)
    from_cache: bool


def _fetch_all(
    ctx: _Ctx, repo_id: str, revision: str, files: Sequence[SourceFile], model
) -> _Fetched:
    plan = _complete(ctx, repo_id, revision, files, _plan(ctx, repo_id, revision, files), model)
    assert plan.commit is not None
    got = {
        f.path: _fetch(ctx, repo_id, plan.commit, f.path, plan.expect[f.path], model) for f in files
    }
    if not (COMMIT_RE.match(revision) and all(f.sha256 for f in files)):
        write_pin(
            ctx.cache_dir,
            repo_id,
            revision,
            plan.commit,
            {p: sha for p, (_, sha, _) in got.items()},
        )
    return _Fetched(
        plan.commit,
        {p: (path, sha) for p, (path, sha, _) in got.items()},
        all(c for *_, c in got.values()),
    )


# ----------------------------------------------------------------------------- registry entries


def _header(path: Path, what: str | None = None):
    from .native import read_native_header

    try:
        return read_native_header(path)
    except CheckpointError as e:
        raise WeightsError(f"{what}: {e}" if what else str(e)) from e


def _registry_result(
    entry: ModelEntry, path: Path, sha: str, commit: str, sources, from_cache
) -> ResolvedWeights:
    dims = _header(path, f"{entry.name}: {path.name}").dims
    if dims != entry.dims:
        raise WeightsError(
            f"{path}: the file's network dims differ from the registry entry {entry.name!r} "
            f"(file {dims.to_json()}, registry {entry.dims.to_json()})"
        )
    converted = ", converted" if entry.source.format == "adcsr-pickle" else ""
    source = f"{entry.name} ({entry.source.repo_id}@{commit}{converted})"
    return ResolvedWeights(
        path, entry.name, dims, sha, "registry", source, from_cache, dict(sources)
    )


def _unreleased(entry: ModelEntry) -> WeightsError:
    why = f" {entry.note}" if entry.note else ""
    return WeightsError(
        f"model {entry.name!r} is listed but not available yet.{why} Use one of the released models "
        f"(`adcvsr models`), or pass --weights PATH to a checkpoint you have."
    )


def _known(ctx: _Ctx, entry: ModelEntry) -> tuple[str, dict[str, str]] | None:
    """The commit and every source's sha256 by role, when known without a request."""
    s = entry.source
    plan = _plan(ctx, s.repo_id or "", s.revision or "", s.files)
    if plan.commit is None or any(f.path not in plan.expect for f in s.files):
        return None
    return plan.commit, {f.role: plan.expect[f.path].sha256 or "" for f in s.files}


def _resolve_entry(ctx: _Ctx, entry: ModelEntry) -> ResolvedWeights:
    if not entry.available:
        raise _unreleased(entry)
    s = entry.source
    assert s.repo_id and s.revision, "validated by load_registry"
    if s.format == "native":
        got = _fetch_all(ctx, s.repo_id, s.revision, s.files, entry.name)
        ((p, (path, sha)),) = got.files.items()
        return _registry_result(entry, path, sha, got.commit, {p: sha}, got.from_cache)
    known = _known(ctx, entry)
    if known is not None:  # a verified conversion is used without touching the network
        native = native_path(ctx.cache_dir, entry.name, entry.dims, known[1])
        hit = verified_native(native, ctx.emit, {"model": entry.name, "file": native.name})
        if hit is not None:
            ctx.emit(
                {
                    "type": "cache",
                    "status": "hit",
                    "model": entry.name,
                    "file": native.name,
                    "path": str(native),
                }
            )
            return _registry_result(entry, native, hit, known[0], _by_path(entry, known[1]), True)
    if ctx.hub.offline:
        _offline_miss(ctx, entry, known[0] if known else None)
    got = _fetch_all(ctx, s.repo_id, s.revision, s.files, entry.name)
    hashes = {f.role: got.files[f.path][1] for f in s.files}
    native = native_path(ctx.cache_dir, entry.name, entry.dims, hashes)
    with conversion_lock(native):
        done = (
            None
            if ctx.force
            else verified_native(native, ctx.emit, {"model": entry.name, "file": native.name})
        )
        from_cache = got.from_cache and done is not None
        done = done or _convert(ctx, entry, got, native)
    return _registry_result(entry, native, done, got.commit, _by_path(entry, hashes), from_cache)


def _by_path(entry: ModelEntry, by_role: Mapping[str, str]) -> dict[str, str]:
    return {entry.source.file(role).path: h for role, h in by_role.items()}


def _offline_miss(ctx: _Ctx, entry: ModelEntry, commit: str | None) -> None:
    s = entry.source
    assert s.repo_id and s.revision
    missing = [
        f.path
        for f in s.files
        if commit is None or H.cached_path(ctx.hub, s.repo_id, commit, f.path) is None
    ]
    if missing:
        raise WeightsError(
            f"model {entry.name!r} is not in the cache ({ctx.cache_dir}) and offline mode is on "
            f"(--offline or HF_HUB_OFFLINE=1): missing {' and '.join(missing)} from "
            f"{s.repo_id}@{commit or s.revision}. Either "
            f"{H.ways_out(ctx.hub, entry.name, f'the adcvsr cache ({ctx.cache_dir})')}."
        )


def _convert(ctx: _Ctx, entry: ModelEntry, got: _Fetched, native: Path) -> str:
    """Convert the released pickles into ``native`` (atomically, hash recorded beside it)."""
    from .convert import convert_adcsr

    s = entry.source
    tmp = native.with_name(f".{native.stem}.{os.getpid()}.converting.safetensors")
    hashes = {f.role: got.files[f.path][1] for f in s.files}
    src = " ".join(f"{role} sha256={sha}" for role, sha in sorted(hashes.items()))
    try:
        convert_adcsr(
            got.files[s.file("net_params").path][0],
            got.files[s.file("half_decoder").path][0],
            tmp,
            dims=entry.dims,
            source=f"{s.repo_id}@{got.commit} adcsr-pickle {src}",
            source_sha256=hashes,  # verified just now: no second hashing pass
            on_event=lambda ev: ctx.emit({**ev, "model": entry.name}),
        )
        sha = sha256_file(tmp, ctx.emit, {"model": entry.name, "file": native.name})
        write_text(native.with_name(native.name + ".sha256"), f"{sha}  {native.name}\n")
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


# ----------------------------------------------------------------------------- references, paths


def _resolve_hub_ref(ctx: _Ctx, ref: H.HubRef) -> ResolvedWeights:
    if not ref.path.endswith(".safetensors"):
        raise WeightsError(
            f"{ref}: only native .safetensors files are loaded from a Hub reference; released AdcSR "
            "pickles are fetched and converted through the registry (e.g. --weights adcsr-x4)"
        )
    if ref.legacy:
        ctx.emit(
            {
                "type": "notice",
                "model": None,
                "message": f"write {ref} (the Hub's form of the reference)",
            }
        )
    if not ref.pinned_by_user:
        ctx.emit({"type": "notice", "model": None, "message": f"{ref} names no @revision: using 'main', "
                  "which is not pinned: it is pinned to its current commit on first use"})  # fmt: skip
    got = _fetch_all(ctx, ref.repo_id, ref.revision, [SourceFile("weights", ref.path)], None)
    path, sha = got.files[ref.path]
    dims = _header(path, str(ref)).dims
    source = f"{HUB_PREFIX}{ref.repo_id}@{got.commit}/{ref.path}"
    return ResolvedWeights(path, None, dims, sha, "hub", source, got.from_cache, {ref.path: sha})


def _looks_like_path(spec: str) -> bool:
    return (
        "/" in spec
        or os.sep in spec
        or spec.startswith((".", "~"))
        or spec.lower().endswith((".safetensors", *_PICKLE_SUFFIXES))
    )


def _resolve_local(ctx: _Ctx, path: Path) -> ResolvedWeights:
    path, dims = _local_dims(path)
    sha = sha256_file(path, ctx.emit, {"model": None, "file": str(path)})
    full = path.resolve()
    return ResolvedWeights(full, None, dims, sha, "local", str(full), True, {str(full): sha})


def _local_dims(path: Path) -> tuple[Path, AdcVSRDims]:
    """A local weights file (``~`` expanded) and its dims, from its header; refuses what is not
    a native checkpoint."""
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
    pickled = head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"
    if path.suffix.lower() in _PICKLE_SUFFIXES or (pickled and head[8:9] != b"{"):
        raise WeightsError(
            f"{path}: a pickled PyTorch checkpoint; adcvsr never unpickles at run time. Convert the "
            "released AdcSR files once with `adcvsr convert`, or use --weights adcsr-x4"
        )
    return path, _header(path).dims


def resolve_weights(
    spec: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
    on_event: H.OnEvent | None = None,
    registry: Registry | str | os.PathLike | None = None,
    force: bool = False,
) -> ResolvedWeights:
    """Turn ``--weights`` into a verified native ``.safetensors`` file.

    ``spec`` is a registry name (None: the registry's default), a local ``.safetensors`` path,
    or ``hf://owner/repo@revision/path``. A registry name wins over a file of the same name in
    the current directory (write ``./name`` for the file). ``offline`` adds to huggingface_hub's
    ``HF_HUB_OFFLINE``. ``cache_dir`` holds everything (Hub downloads in its ``hub`` folder);
    without it converted files and pins go to ``ADCVSR_CACHE`` and downloads to the Hub's cache.
    ``force`` fetches and converts again, and pins a branch afresh. Raises WeightsError.
    """
    ctx = _make_ctx(cache_dir, offline, on_event, force)
    if isinstance(spec, os.PathLike):
        return _resolve_local(ctx, Path(spec))
    if not spec:
        reg = as_registry(registry)
        return _resolve_entry(ctx, reg.get(reg.default))
    if spec.startswith(HUB_PREFIX):
        return _resolve_hub_ref(ctx, H.parse_hub_ref(spec))
    if _looks_like_path(spec):
        return _resolve_local(ctx, Path(spec))
    reg = as_registry(registry)
    if spec not in reg.models and Path(spec).is_file():
        return _resolve_local(ctx, Path(spec))
    return _resolve_entry(ctx, reg.get(spec))


def peek_dims(
    spec: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    registry: Registry | str | os.PathLike | None = None,
) -> AdcVSRDims | None:
    """The dims of the network ``spec`` names (as :func:`resolve_weights` reads ``spec``),
    without loading a tensor or touching the network: a registry entry's, a local file's header,
    a cached ``hf://`` file's. None for an ``hf://`` file that is not cached. Raises
    WeightsError as :func:`resolve_weights` would for a missing or foreign local file."""
    if isinstance(spec, str) and spec.startswith(HUB_PREFIX):
        try:
            return resolve_weights(spec, cache_dir=cache_dir, offline=True).dims
        except WeightsError:
            return None
    if isinstance(spec, os.PathLike) or (spec and _looks_like_path(spec)):
        return _local_dims(Path(spec))[1]
    reg = as_registry(registry)
    name = spec or reg.default
    if name not in reg.models and Path(name).is_file():
        return _local_dims(Path(name))[1]
    entry = reg.get(name)
    if not entry.available:
        raise _unreleased(entry)
    return entry.dims


# ----------------------------------------------------------------------------- commands


def list_models(
    cache_dir: str | os.PathLike | None = None,
    *,
    registry: Registry | str | os.PathLike | None = None,
    verify: bool = True,
    on_event: H.OnEvent | None = None,
) -> list[ModelStatus]:
    """One status row per registry entry, from the caches only (never the network).

    ``verify`` hashes each cached file (about 1 s per GB); without it ``verified`` is False.
    """
    ctx = _make_ctx(cache_dir, True, on_event)
    return [_status(ctx, entry, verify) for entry in as_registry(registry).models.values()]


def _status(ctx: _Ctx, entry: ModelEntry, verify: bool) -> ModelStatus:
    s = entry.source
    plan = _plan(ctx, s.repo_id or "", s.revision or "", s.files) if entry.available else None
    commit = plan.commit if plan is not None else None
    hub_files = {
        f.path: H.cached_path(ctx.hub, s.repo_id, commit, f.path) if s.repo_id and commit else None
        for f in s.files
    }

    def row(
        path: Path | None = None, source_bytes: int = 0, *, verified: bool = False, detail: str
    ) -> ModelStatus:
        return ModelStatus(
            entry.name, entry.description, entry.architecture, entry.scale, entry.parameters,
            entry.temporal_blocks, entry.license, entry.available, commit is not None,
            plan.pinned_by if commit is not None and plan is not None else None, commit,
            path is not None, verified, path, path.stat().st_size if path is not None else 0,
            source_bytes, detail,
        )  # fmt: skip

    if plan is None:
        return row(detail="not yet released")
    source_bytes = sum(p.stat().st_size for p in hub_files.values() if p is not None)
    if s.format == "native":
        path, f = hub_files[s.files[0].path], s.files[0]
        expected = plan.expect.get(f.path, _Expect(None, "")).sha256
    else:
        known = _known(ctx, entry)
        path = native_path(ctx.cache_dir, entry.name, entry.dims, known[1]) if known else None
        path = path if path is not None and path.is_file() else None
        expected = read_sidecar(path) if path is not None else None
    if path is None:
        converted = s.format != "native" and all(hub_files.values())
        return row(
            None,
            source_bytes,
            detail="sources downloaded, not converted yet" if converted else "not downloaded",
        )
    if not verify:
        return row(path, source_bytes, detail="not checked")
    actual = sha256_file(path, ctx.emit, {"model": entry.name, "file": path.name})
    if expected in (None, actual):
        return row(path, source_bytes, verified=True, detail="verified")
    return row(
        path,
        source_bytes,
        detail=f"corrupt: sha256 {actual} != {expected} (will be fetched or rebuilt)",
    )


def download(
    names: Sequence[str] | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    on_event: H.OnEvent | None = None,
    registry: Registry | str | os.PathLike | None = None,
) -> list[DownloadResult]:
    """Fetch, verify and convert registry models (default: the registry's default model).

    Unknown or unreleased names raise WeightsError before anything is fetched. Each model then
    succeeds or fails on its own: a failure is reported in its result and the others go on.
    ``HF_HUB_OFFLINE=1`` turns this into a check of the cache.
    """
    reg = as_registry(registry)
    entries = [reg.get(n) for n in (list(dict.fromkeys(names)) if names else [reg.default])]
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
