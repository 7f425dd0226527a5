"""Verified Hub files through huggingface_hub, and the pins that make reruns request nothing.

``hf_hub_download`` at a commit answers from its cache without a request. Added here: the SHA-256
check (registry, else pin, else the Hub's LFS metadata), a branch pinned on first use
(``pins/*.json`` in the adcvsr cache) and one clear WeightsError per failure.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tqdm.std import tqdm

from ..errors import WeightsError
from .convert import sha256_file
from .registry import COMMIT_RE, HUB_PREFIX, SHA256_RE, SourceFile

OnEvent = Callable[[dict[str, Any]], None]
CACHE_ENV = "ADCVSR_CACHE"
_SPECIAL_REF = ("refs/pr/", "refs/convert/")


def default_cache_dir() -> Path:
    """``$ADCVSR_CACHE``, else ``$XDG_CACHE_HOME/adcvsr``, else ``~/.cache/adcvsr``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "adcvsr"


class NotCachedError(WeightsError):
    """Offline, and a file the weights need is not in the cache."""


@dataclass(frozen=True)
class HubRef:
    """A parsed ``hf://owner/repo@revision/path/in/repo``."""

    repo_id: str
    path: str
    revision: str
    pinned_by_user: bool = True  # an @revision was written (a branch is still pinned on first use)
    legacy: bool = False  # written as hf://owner/repo/path@revision

    def __str__(self) -> str:
        special = self.revision.startswith(_SPECIAL_REF)
        return f"{HUB_PREFIX}{self.repo_id}@{self.revision if special else quote(self.revision, safe='')}/{self.path}"


def parse_hub_ref(ref: str) -> HubRef:
    """``hf://owner/repo[@revision]/path`` (``main`` if left out), by huggingface_hub's parser.

    The old ``hf://owner/repo/path@revision`` is read where it is unambiguous (a file name with
    an extension before the ``@``, no ``/`` after it but in ``refs/pr/N``).
    """
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    form = f"(expected {HUB_PREFIX}owner/repo@revision/path/to/file.safetensors)"
    try:
        uri = parse_hf_uri(ref) if ref.startswith(HUB_PREFIX) else None
    except HfUriError as e:
        raise WeightsError(f"{ref!r}: {e} {form}") from e
    if uri is None or uri.type != "model":
        raise WeightsError(f"{ref!r} is not a Hub model reference {form}")
    path, revision, legacy = uri.path_in_repo, uri.revision, False
    if revision is None and "@" in path:
        old_path, _, old_rev = path.rpartition("@")
        if not old_rev:
            raise WeightsError(f"{ref!r}: empty revision after '@' {form}")
        if "." in old_path.rsplit("/", 1)[-1] and (
            "/" not in old_rev or old_rev.startswith(_SPECIAL_REF)
        ):
            path, revision, legacy = old_path, old_rev, True
        else:
            raise WeightsError(
                f"{ref!r} is ambiguous: for the file {path!r} write {HUB_PREFIX}{uri.id}@main/{path}; for "
                f"the file {old_path!r} at revision {old_rev!r} write {HUB_PREFIX}{uri.id}@{quote(old_rev, safe='')}/{old_path}"
            )
    if not path or any(p in ("", ".", "..") for p in path.split("/")):
        raise WeightsError(f"{ref!r}: {path!r} is not a file path inside the repo {form}")
    return HubRef(uri.id, path, revision or "main", revision is not None, legacy)


@dataclass(frozen=True)
class Hub:
    """The caches and the network rules of one resolution."""

    root: Path  # the adcvsr cache: pins and converted files
    hub_cache: Path | None  # None: the library's HF_HUB_CACHE
    offline: bool
    force: bool
    on_event: OnEvent | None

    @staticmethod
    def open(cache_dir, offline, on_event, force=False) -> Hub:
        from huggingface_hub import constants

        root = Path(cache_dir).expanduser() if cache_dir is not None else None
        offline = bool(offline) or constants.is_offline_mode()
        return Hub(root or default_cache_dir(), root and root / "hub", offline, force, on_event)

    def emit(self, **event: Any) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def ways_out(self, model: str | None) -> str:
        """How to run without the network, naming the caches that have to travel."""
        from huggingface_hub import constants

        both = f"{self.root} and {constants.HF_HUB_CACHE}"
        caches = self.hub_cache.parent if self.hub_cache else both
        run = f"`adcvsr download {model}`" if model else "the same command"
        return f"run {run} on a connected machine and copy {caches} over, or pass --weights PATH to a local .safetensors file"

    def cached(self, repo_id: str, commit: str | None, path: str) -> Path | None:
        """``path`` at ``commit`` in the Hub cache, if it is there (no request)."""
        from huggingface_hub import try_to_load_from_cache

        found = commit and try_to_load_from_cache(repo_id, path, self.hub_cache, commit)
        return Path(found) if isinstance(found, str) else None


def pin_file(hub: Hub, repo_id: str, revision: str) -> Path:
    return hub.root / "pins" / f"{repo_id.replace('/', '--')}@{quote(revision, safe='')}.json"


def read_pin(hub: Hub, repo_id: str, revision: str) -> dict[str, Any] | None:
    """``{"commit", "pinned_at", "files": {path: sha256}}`` recorded for ``repo_id@revision``."""
    try:
        pin = json.loads(pin_file(hub, repo_id, revision).read_text(encoding="utf-8"))
        ok = COMMIT_RE.match(pin["commit"]) and all(map(SHA256_RE.match, pin["files"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # unreadable: as if never pinned
    return pin if ok and (pin["repo_id"], pin["revision"]) == (repo_id, revision) else None


def known(hub: Hub, repo_id: str, revision: str, files: Sequence[SourceFile]):
    """The commit (or None), {path: (sha256, from where)} and who pinned it, without a request."""
    pin = None if hub.force else read_pin(hub, repo_id, revision)
    expect = {f.path: (f.sha256, "the registry") for f in files if f.sha256}
    if pin is not None:
        why = f"the pin made at the first download on {pin['pinned_at']} (record {pin_file(hub, repo_id, revision)})"
        expect = {p: (h, why) for p, h in pin["files"].items()} | expect
    commit = revision if COMMIT_RE.match(revision) else pin and pin["commit"]
    return commit, expect, "registry" if commit == revision else "first use" if commit else None


def fetch(hub: Hub, repo_id: str, revision: str, files: Sequence[SourceFile], model: str | None):
    """(commit, {path: (local file, sha256)}, nothing was downloaded): every file verified at one
    commit. A branch, or a file without a known hash, is pinned now."""
    commit, expect, _ = known(hub, repo_id, revision, files)
    paths = [f.path for f in files]
    if hub.offline and (missing := [p for p in paths if hub.cached(repo_id, commit, p) is None]):
        who = f"model {model!r}" if model else f"{HUB_PREFIX}{repo_id}@{revision}/{paths[0]}"
        raise NotCachedError(
            f"{who} is not in the cache: missing {' and '.join(missing)} from {repo_id}@{commit or revision}, "
            f"and offline mode is on (--offline or HF_HUB_OFFLINE=1). Either {hub.ways_out(model)}."
        )
    if commit is None or (not hub.offline and any(p not in expect for p in paths)):
        new, lfs = _declared(hub, repo_id, commit or revision, model)
        if commit is None:
            old = read_pin(hub, repo_id, revision)
            moved = f" (it was {old['commit']})" if old and old["commit"] != new else ""
            msg = f"{repo_id}@{revision} is not pinned to a commit: pinning it to {new}{moved} on first use"
            hub.emit(type="notice", model=model, message=f"{msg}, with the sha256 of each file")
        commit, expect = new, {p: (h, "the Hub's LFS metadata") for p, h in lfs.items()} | expect
    got = {p: _fetch_one(hub, repo_id, commit, p, expect.get(p, (None, "")), model) for p in paths}
    if not (COMMIT_RE.match(revision) and all(f.sha256 for f in files)):
        _write_pin(hub, repo_id, revision, commit, {p: sha for p, (_, sha, _) in got.items()})
    local = {p: (path, sha) for p, (path, sha, _) in got.items()}
    return commit, local, all(hit for *_, hit in got.values())


def _write_pin(hub: Hub, repo_id: str, revision: str, commit: str, files: dict[str, str]) -> None:
    from .native import atomic_write

    old = read_pin(hub, repo_id, revision)
    when = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    if old is not None and old["commit"] == commit:  # the same pin, perhaps with more files
        if old["files"] | files == old["files"]:
            return
        files, when = old["files"] | files, old["pinned_at"]
    rec = dict(repo_id=repo_id, revision=revision, commit=commit, pinned_at=when, files=files)
    path, text = pin_file(hub, repo_id, revision), json.dumps(rec, indent=2, sort_keys=True)
    try:
        atomic_write(path, lambda t: t.write_text(text + "\n", encoding="utf-8"))
    except OSError as e:  # a read-only or full cache: this run is verified, later ones less so
        lost = f"a later run cannot tell whether {revision} moved to another commit or its files changed"
        keep = "Pass --cache-dir DIR (or set ADCVSR_CACHE) naming a writable folder to keep the pin"
        msg = f"cannot record the pin of {repo_id}@{revision} in {path.parent} ({e.strerror or e})"
        hub.emit(
            type="warning", message=f"{msg}: this run's files are verified, but {lost}. {keep}"
        )


def _fetch_one(hub: Hub, repo_id, commit, path, expect, model) -> tuple[Path, str, bool]:
    """(local file, sha256, came from the cache): a bad copy is fetched once more, then refused."""
    from huggingface_hub import hf_hub_download

    want, why = expect
    label, what = {"model": model, "file": path}, f"{path} from {repo_id}@{commit}"
    fresh = hub.force or hub.cached(repo_id, commit, path) is None
    for attempt in (1, 2):
        with _asking(hub, repo_id, commit, path, model):
            local = Path(
                hf_hub_download(
                    repo_id,
                    path,
                    revision=commit,
                    cache_dir=hub.hub_cache,
                    endpoint=_endpoint(),
                    local_files_only=hub.offline,
                    force_download=hub.force or attempt == 2,
                    tqdm_class=_progress(hub, label),
                )
            )
        sha = sha256_file(local)
        if want in (None, sha):
            if fresh:
                hub.emit(type="download", stage="done", **label, path=str(local))
                hub.emit(type="verify", stage="done", **label, sha256=sha)
            else:
                hub.emit(type="cache", status="hit", **label, path=str(local))
            return local, sha, not fresh
        bad = {"expected": want, "actual": sha, "path": str(local)}
        if fresh:
            hub.emit(type="verify", stage="mismatch", **label, attempt=attempt, **bad)
        else:
            hub.emit(type="cache", status="corrupt", **label, **bad)
        if hub.offline:
            raise WeightsError(
                f"the cached {what} is corrupt (sha256 {sha}, expected {want} from {why}); offline "
                f"mode is on, so it cannot be fetched again: {hub.ways_out(model)}"
            )
        fresh = True
    for p in {local.resolve(), local}:  # the library's blob and its snapshot link to it
        p.unlink(missing_ok=True)
    raise WeightsError(
        f"{what} failed verification twice: expected sha256 {want} (from {why}), got {sha}. "
        "The bad download was deleted."
    )


def _declared(hub: Hub, repo_id: str, revision: str, model) -> tuple[str, dict[str, str]]:
    """The commit ``revision`` points to and the SHA-256 the Hub declares per LFS file."""
    from huggingface_hub import HfApi, constants

    with _asking(hub, repo_id, revision, "the file list", model):  # the library sets no timeout
        info = HfApi(endpoint=_endpoint()).model_info(
            repo_id, revision=revision, files_metadata=True, timeout=constants.HF_HUB_ETAG_TIMEOUT
        )
    if not (info.sha and COMMIT_RE.match(info.sha)):
        where = f"{_endpoint() or 'the Hub'} gave no commit for {repo_id}@{revision}"
        raise WeightsError(
            f"{where}: it does not answer like a Hugging Face Hub (check HF_ENDPOINT)"
        )
    return info.sha, {s.rfilename: s.lfs.sha256 for s in info.siblings or () if s.lfs}


def _progress(hub: Hub, label: dict[str, Any]) -> type[tqdm]:
    """A tqdm for the library's ``tqdm_class`` hook: draws nothing, reports bytes as events."""

    class EventBar(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "file": io.StringIO(), "leave": False})
            hub.emit(type="download", stage="start", **label, bytes=self.n, total=self.total)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            hub.emit(type="download", stage="progress", **label, bytes=self.n, total=self.total)
            return shown

    return EventBar


def _endpoint() -> str | None:
    return (os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None  # read now, not at import


@contextlib.contextmanager
def _asking(hub: Hub, repo_id: str, revision: str, path: str, model) -> Iterator[None]:
    """A huggingface_hub / httpx2 / OS error raised inside is one clear WeightsError."""
    import httpx2

    try:
        yield
    except (OSError, ValueError, httpx2.HTTPError, httpx2.InvalidURL) as e:
        raise _hub_error(e, hub, repo_id, revision, path, model) from e


def _hub_error(e: BaseException, hub: Hub, repo_id, revision, path, model) -> WeightsError:
    """The first message below that fits ``e`` (or what is behind the library's own errors)."""
    import httpx2
    from huggingface_hub import errors as hfe

    while isinstance(e, (hfe.LocalEntryNotFoundError, ValueError)) and e.__cause__ is not None:
        e = e.__cause__  # behind the library's "not in the cache" and "force download failed"
    what, host = f"{path} from {repo_id}@{revision}", _endpoint() or "https://huggingface.co"
    status = getattr(getattr(e, "response", None), "status_code", None) or "?"
    refused = "access refused: private or gated repo? set HF_TOKEN"
    why = refused if status in (401, 403) else "refused"
    why = "a server error; retry later" if isinstance(status, int) and status >= 500 else why
    down = (httpx2.NetworkError, httpx2.ProxyError, httpx2.UnsupportedProtocol)
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    messages: dict[Any, str] = {
        httpx2.TimeoutException: f"the Hugging Face Hub at {host} did not answer in time while fetching {what} (limits: HF_HUB_ETAG_TIMEOUT, HF_HUB_DOWNLOAD_TIMEOUT, in seconds): the network looks down or very slow. Retry later, or work offline: {hub.ways_out(model)}",
        down: f"cannot reach the Hugging Face Hub at {host} to fetch {what}: the network is down or the endpoint is wrong ({detail}). Check the connection (and HF_ENDPOINT), or work offline: {hub.ways_out(model)}",
        hfe.GatedRepoError: f"{repo_id} is gated: accept its terms on the Hub and set HF_TOKEN, then retry ({what})",
        hfe.RepositoryNotFoundError: f"repository {repo_id} was not found on {host} (or it is private: set HF_TOKEN) while fetching {what}",
        hfe.RevisionNotFoundError: f"revision {revision!r} does not exist in {repo_id} (fetching {path})",
        hfe.RemoteEntryNotFoundError: f"file {path} does not exist in {repo_id} at revision {revision}",
        hfe.HfHubHTTPError: f"the Hub at {host} answered HTTP {status} for {what} ({why})",
    }
    fallback = f"download of {what} from {host} failed: {detail}"
    return WeightsError(next((m for c, m in messages.items() if isinstance(e, c)), fallback))
