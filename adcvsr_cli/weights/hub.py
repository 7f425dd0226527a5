"""The Hugging Face Hub, through huggingface_hub as it is meant to be used.

Files are fetched with ``hf_hub_download`` at a commit, so a cached file costs no request;
``--offline`` is ``local_files_only``; the Hub cache is the library's (``HF_HUB_CACHE`` /
``HF_HOME``) unless a cache folder is given; progress comes through its ``tqdm_class`` hook;
its log records stay its own. What the library does not give, we add: the commit a branch
points to and the SHA-256 the Hub declares for each file, read with one ``model_info`` call
when a file's hash is not known yet, and one clear :class:`WeightsError` for each failure.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tqdm.std import tqdm

from ..errors import WeightsError
from .registry import COMMIT_RE, HUB_PREFIX, REPO_ID_RE

Event = dict[str, Any]
OnEvent = Callable[[Event], None]

_SPECIAL_REF = ("refs/pr/", "refs/convert/")


# ----------------------------------------------------------------------------- references


@dataclass(frozen=True)
class HubRef:
    """A parsed ``hf://owner/repo@revision/path/in/repo`` reference."""

    repo_id: str
    path: str
    revision: str
    pinned_by_user: bool = True  # an @revision was written (a branch is still pinned on first use)
    legacy: bool = False  # written as hf://owner/repo/path@revision

    def __str__(self) -> str:
        rev = (
            self.revision
            if self.revision.startswith(_SPECIAL_REF)
            else quote(self.revision, safe="")
        )
        return f"{HUB_PREFIX}{self.repo_id}@{rev}/{self.path}"


def parse_hub_ref(ref: str) -> HubRef:
    """Parse the Hub's ``hf://owner/repo[@revision]/path`` (revision ``main`` when left out).

    The older ``hf://owner/repo/path@revision`` still works where it cannot mean anything else
    (a file name with an extension before the ``@``, no ``/`` after it but in ``refs/pr/N``);
    elsewhere the error spells both readings in the Hub's form.
    """
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    form = f"{HUB_PREFIX}owner/repo@revision/path/to/file.safetensors"
    try:
        uri = parse_hf_uri(ref) if ref.startswith(HUB_PREFIX) else None
    except HfUriError as e:
        raise WeightsError(f"{ref!r}: {e.msg if hasattr(e, 'msg') else e} (expected {form})") from e
    if uri is None or uri.type != "model":
        raise WeightsError(f"{ref!r} is not a Hub model reference (expected {form})")
    path, revision, legacy = uri.path_in_repo, uri.revision, False
    if revision is None and "@" in path:
        old_path, _, old_rev = path.rpartition("@")
        if not old_rev:
            raise WeightsError(f"{ref!r}: empty revision after '@' (expected {form})")
        if "." in old_path.rsplit("/", 1)[-1] and (
            "/" not in old_rev or old_rev.startswith(_SPECIAL_REF)
        ):
            path, revision, legacy = old_path, old_rev, True
        else:
            raise WeightsError(
                f"{ref!r} is ambiguous: for the file {path!r} write {HUB_PREFIX}{uri.id}@main/{path}; "
                f"for the file {old_path!r} at revision {old_rev!r} write "
                f"{HUB_PREFIX}{uri.id}@{quote(old_rev, safe='')}/{old_path}"
            )
    if not REPO_ID_RE.match(uri.id):
        raise WeightsError(f"{ref!r}: {uri.id!r} is not a valid repo id")
    if not path or path.endswith("/") or any(p in ("", ".", "..") for p in path.split("/")):
        raise WeightsError(
            f"{ref!r}: {path!r} is not a file path inside the repo (expected {form})"
        )
    return HubRef(
        uri.id, path, revision or "main", pinned_by_user=revision is not None, legacy=legacy
    )


# ----------------------------------------------------------------------------- calls


@dataclass(frozen=True)
class Hub:
    """Where and how to reach the Hub for one resolution."""

    cache_dir: Path | None  # None: the library's HF_HUB_CACHE
    offline: bool
    on_event: OnEvent | None

    @property
    def endpoint(self) -> str | None:
        # Read when called (the library reads HF_ENDPOINT once, at import).
        return (os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None

    @property
    def cache_text(self) -> str:
        from huggingface_hub import constants

        return str(self.cache_dir or constants.HF_HUB_CACHE)

    def emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)


def cached_path(hub: Hub, repo_id: str, commit: str, path: str) -> Path | None:
    """``path`` at ``commit`` in the Hub cache, if there (the library's lookup: no request)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, path, cache_dir=hub.cache_dir, revision=commit)
    return Path(found) if isinstance(found, str) else None


def download(
    hub: Hub, repo_id: str, commit: str, path: str, model: str | None, *, force: bool
) -> Path:
    """``path`` at ``commit``: from the cache without a request, else downloaded into it."""
    from huggingface_hub import hf_hub_download

    label = {"model": model, "file": path}
    try:
        local = hf_hub_download(
            repo_id,
            path,
            revision=commit,
            cache_dir=hub.cache_dir,
            endpoint=hub.endpoint,
            local_files_only=hub.offline,
            force_download=force,
            tqdm_class=progress_class(hub.emit, label),
        )
    except _errors() as e:
        raise hub_error(e, hub, repo_id, commit, path, model) from e
    return Path(local)


def declared(
    hub: Hub, repo_id: str, revision: str, model: str | None
) -> tuple[str, dict[str, str]]:
    """The commit ``revision`` points to now, and the SHA-256 the Hub declares per LFS file."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=hub.endpoint).model_info(
            repo_id, revision=revision, files_metadata=True
        )
    except _errors() as e:
        raise hub_error(e, hub, repo_id, revision, "(the repository's file list)", model) from e
    if not info.sha or not COMMIT_RE.match(info.sha):
        raise WeightsError(
            f"{hub.endpoint or 'the Hub'} gave no commit for {repo_id}@{revision}: "
            "it does not answer like a Hugging Face Hub (check HF_ENDPOINT)"
        )
    hashes = {s.rfilename: s.lfs.sha256 for s in info.siblings or () if s.lfs is not None}
    return info.sha, hashes


def evict(hub: Hub, local: Path) -> None:
    """Delete a downloaded file from the Hub cache (its snapshot entry and its blob)."""
    from huggingface_hub import scan_cache_dir

    for repo in scan_cache_dir(hub.cache_dir).repos:
        for rev in repo.revisions:
            for f in rev.files:
                if Path(f.file_path) == local:
                    for p in (f.blob_path, f.file_path):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(p)


def progress_class(emit: OnEvent, label: dict[str, Any]) -> type[tqdm]:
    """A tqdm for ``hf_hub_download``'s hook that draws nothing and reports bytes as events."""

    class _EventBar(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "file": _Discard(), "leave": False})
            emit(
                {
                    "type": "download",
                    "stage": "start",
                    **label,
                    "bytes": self.n,
                    "total": self.total,
                }
            )

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            emit(
                {
                    "type": "download",
                    "stage": "progress",
                    **label,
                    "bytes": self.n,
                    "total": self.total,
                }
            )
            return shown

    return _EventBar


class _Discard:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


# ----------------------------------------------------------------------------- errors


def _errors() -> tuple[type[BaseException], ...]:
    import httpx2

    return (OSError, ValueError, httpx2.HTTPError, httpx2.InvalidURL)


def ways_out(hub: Hub, model: str | None, cache: str) -> str:
    """The two ways to run without the network, naming the cache that has to travel."""
    run = f"`adcvsr download {model}`" if model else "the same command"
    return f"run {run} on a connected machine and copy {cache} over, or pass --weights PATH to a local .safetensors file"


def _cause(e: BaseException) -> BaseException:
    """The error behind the library's wrappers ("not in the cache", "force download failed")."""
    from huggingface_hub import errors as hfe

    while isinstance(e, (hfe.LocalEntryNotFoundError, ValueError)) and e.__cause__ is not None:
        e = e.__cause__
    return e


def hub_error(
    e: BaseException, hub: Hub, repo_id: str, revision: str, path: str, model: str | None
) -> WeightsError:
    """One clear WeightsError for a huggingface_hub / httpx2 / OS error."""
    import httpx2
    from huggingface_hub import errors as hfe

    what, endpoint = f"{path} from {repo_id}@{revision}", hub.endpoint or "https://huggingface.co"
    out = ways_out(hub, model, f"the Hugging Face cache ({hub.cache_text})")
    cause = _cause(e)
    if isinstance(cause, hfe.OfflineModeIsEnabled) or (
        hub.offline and isinstance(e, hfe.LocalEntryNotFoundError)
    ):
        return WeightsError(f"{what} is not in the cache and offline mode is on: {out}")
    if isinstance(cause, httpx2.TimeoutException):
        return WeightsError(
            f"the Hugging Face Hub at {endpoint} did not answer in time (HF_HUB_ETAG_TIMEOUT) while "
            f"fetching {what}: the network looks down or very slow. Retry later, or work offline: {out}"
        )
    if isinstance(
        cause, (httpx2.NetworkError, httpx2.ProxyError, httpx2.UnsupportedProtocol, ConnectionError)
    ):
        return WeightsError(
            f"cannot reach the Hugging Face Hub at {endpoint} to fetch {what}: the network is down or "
            f"the endpoint is wrong ({str(cause).strip() or type(cause).__name__}). Check the "
            f"connection (and HF_ENDPOINT), or work offline: {out}"
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
        kind = (
            "a server error; retry later"
            if status >= 500
            else "access refused: private or gated repo? set HF_TOKEN"
            if status in (401, 403)
            else "refused"
        )
        return WeightsError(
            f"the Hub at {endpoint} answered HTTP {status or '?'} for {what} ({kind})"
        )
    if isinstance(cause, hfe.FileMetadataError):
        return WeightsError(
            f"{endpoint} does not answer like a Hugging Face Hub for {what} (check HF_ENDPOINT): {cause}"
        )
    detail = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    return WeightsError(f"download of {what} from {endpoint} failed: {detail}")
