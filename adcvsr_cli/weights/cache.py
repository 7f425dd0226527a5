"""The adcvsr cache: pins made on first use, and converted native files.

``ADCVSR_CACHE`` (or ``--cache-dir``, or ``~/.cache/adcvsr``) holds

* ``pins/<owner>--<repo>@<revision>.json``: the commit a branch pointed to at the first
  download and the SHA-256 of each file then verified. Later runs use that commit and those
  hashes, so they make no request and cannot silently pick up new files.
* ``native/<name>-<key>.safetensors``: released pickles converted once, keyed by the sources'
  hashes, with their own hash in a ``.sha256`` file beside each.

Files are written atomically, with the user's umask, like every other tool's.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import WeightsError
from ..model import AdcVSRDims
from .native import FORMAT_VERSION, atomic_write
from .registry import COMMIT_RE, SHA256_RE

CACHE_ENV = "ADCVSR_CACHE"
_HASH_CHUNK = 8 << 20
_HASH_EVENT_EVERY = 256 << 20

Emit = Callable[[dict[str, Any]], None]


def default_cache_dir() -> Path:
    """``$ADCVSR_CACHE``, else ``$XDG_CACHE_HOME/adcvsr``, else ``~/.cache/adcvsr``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "adcvsr"


def sha256_file(
    path: Path, emit: Emit | None = None, label: Mapping[str, Any] | None = None
) -> str:
    """SHA-256 of a file, read in chunks; large files report ``verify`` progress events."""
    h, total, done, next_event = hashlib.sha256(), path.stat().st_size, 0, 0
    with open(path, "rb") as f:
        while block := f.read(_HASH_CHUNK):
            h.update(block)
            done += len(block)
            if emit is not None and done >= next_event and total > _HASH_EVENT_EVERY:
                emit(
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


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ----------------------------------------------------------------------------- pins


@dataclass(frozen=True)
class Pin:
    """A branch's commit and its files' SHA-256, recorded at the first download."""

    repo_id: str
    revision: str
    commit: str
    pinned_at: str
    files: Mapping[str, str] = field(default_factory=dict)  # path in the repo -> sha256
    record: Path | None = None


def pin_path(cache_dir: Path, repo_id: str, revision: str) -> Path:
    return cache_dir / "pins" / f"{repo_id.replace('/', '--')}@{quote(revision, safe='')}.json"


def read_pin(cache_dir: Path, repo_id: str, revision: str) -> Pin | None:
    """The pin recorded for ``repo_id@revision``, or None (also for an unreadable record)."""
    p = pin_path(cache_dir, repo_id, revision)
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
        pin = Pin(
            rec["repo_id"], rec["revision"], rec["commit"], rec["pinned_at"], dict(rec["files"]), p
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = COMMIT_RE.match(pin.commit) and all(SHA256_RE.match(str(h)) for h in pin.files.values())
    return pin if ok and (pin.repo_id, pin.revision) == (repo_id, revision) else None


def write_pin(
    cache_dir: Path, repo_id: str, revision: str, commit: str, files: Mapping[str, str]
) -> Pin:
    """Record (or extend, for the same commit) the pin of ``repo_id@revision``."""
    old = read_pin(cache_dir, repo_id, revision)
    merged = {**(old.files if old is not None and old.commit == commit else {}), **files}
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    when = old.pinned_at if old is not None and old.commit == commit else now
    p = pin_path(cache_dir, repo_id, revision)
    rec = {
        "repo_id": repo_id,
        "revision": revision,
        "commit": commit,
        "pinned_at": when,
        "files": merged,
    }
    if old is None or old.commit != commit or dict(old.files) != merged:
        with contextlib.suppress(OSError):  # a read-only cache still works, it just cannot remember
            write_text(p, json.dumps(rec, indent=2, sort_keys=True) + "\n")
    return Pin(repo_id, revision, commit, when, merged, p)


# ----------------------------------------------------------------------------- converted files


def native_path(cache_dir: Path, name: str, dims: AdcVSRDims, hashes: Mapping[str, str]) -> Path:
    """Where the conversion of sources with these hashes lives (the key changes with any of them)."""
    blob = json.dumps(
        {
            "sources": dict(sorted(hashes.items())),
            "dims": dims.to_json(),
            "format_version": FORMAT_VERSION,
        },
        sort_keys=True,
    )
    return (
        cache_dir
        / "native"
        / f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.safetensors"
    )


def sidecar(native: Path) -> Path:
    return native.with_name(native.name + ".sha256")


def read_sidecar(native: Path) -> str | None:
    try:
        first = sidecar(native).read_text(encoding="utf-8").split()
    except OSError:
        return None
    return first[0] if first and SHA256_RE.match(first[0]) else None


def verified_native(native: Path, emit: Emit, label: Mapping[str, Any]) -> str | None:
    """sha256 of a cached native file if it matches the hash recorded beside it; else delete it."""
    if not native.is_file():
        return None
    recorded = read_sidecar(native)
    actual = sha256_file(native, emit, label) if recorded else None
    if recorded and actual == recorded:
        return actual
    emit(
        {
            "type": "cache",
            "status": "corrupt",
            **label,
            "path": str(native),
            "expected": recorded,
            "actual": actual,
        }
    )
    for p in (native, sidecar(native)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return None


@contextlib.contextmanager
def conversion_lock(native: Path) -> Iterator[None]:
    """One conversion at a time per file: a second process waits, then finds it done."""
    from huggingface_hub.utils import WeakFileLock

    try:
        native.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(f"cannot create the cache directory {native.parent}: {e}") from e
    with WeakFileLock(native.parent / f".{native.stem}.lock"):
        yield
