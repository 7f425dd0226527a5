"""The work folder of a segmented run: its manifest, its lock, and the checks that make resume safe.

The folder lies beside the output (``.<name>.adcvsr-work``), on the same filesystem, so every
node of a cluster sees it. ``manifest.json`` says what is being made (the input's identity, the
options that change pixels, the frame timestamps, the segment plan) and which segments are
complete, each with its frame count, size and SHA-256. It is rewritten atomically after each
segment. A rerun of the same command continues from it; a changed input or option is refused
with what changed. ``lock`` names the run that works here (host name and process id): another
run is refused while its owner is alive, and a lock is taken over only when its owner is
provably gone (same host, dead process) or it has not been touched for :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

MANIFEST_VERSION = 1
WORK_SUFFIX = ".adcvsr-work"
HEAD_TAIL_BYTES = 1 << 20
# A lock (or temp file) untouched this long belongs to a run that is gone, whichever node it
# ran on: live runs touch their lock at every segment, and no segment takes six hours.
STALE_AFTER_S = 6 * 3600.0


class ResumeRefused(UsageError):
    """The work folder was made for another input or other options; ``changes`` says what."""

    def __init__(self, message: str, changes: list[str]) -> None:
        super().__init__(message)
        self.changes = changes


class WorkFolderBusy(UsageError):
    """Another live run owns the work folder."""


def host_name() -> str:
    """This machine's short name, as it appears in temporary file names."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0]) or "host"


def owner_tag() -> str:
    """``<host>-<pid>``: in the name of every temporary file, so nodes never take others'."""
    return f"{host_name()}-{os.getpid()}"


def work_dir(dst: str | os.PathLike[str]) -> Path:
    p = Path(os.path.abspath(os.fspath(dst)))
    return p.with_name(f".{p.name}{WORK_SUFFIX}")


def input_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Size, modification time and a SHA-256 of the first and last MiB of the input."""
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(HEAD_TAIL_BYTES))
        if st.st_size > HEAD_TAIL_BYTES:
            f.seek(max(HEAD_TAIL_BYTES, st.st_size - HEAD_TAIL_BYTES))
            h.update(f.read(HEAD_TAIL_BYTES))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_tail_sha256": h.hexdigest()}


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``path`` through a temp file named for this host and process, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{owner_tag()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class Manifest:
    """What a work folder is making and how far it got (``done``: segment index -> record)."""

    input: dict[str, Any]
    options: dict[str, Any]
    plan: dict[str, Any]  # frames, pts, keyframes, cuts, segments, time_base, container
    done: dict[int, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "input": self.input,
            "options": self.options,
            "plan": self.plan,
            "done": {str(k): v for k, v in sorted(self.done.items())},
        }

    @classmethod
    def load(cls, folder: Path) -> Manifest | None:
        """The manifest in ``folder``, or None when there is none (or it is unreadable)."""
        try:
            raw = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # torn by a crash before its first rename: nothing to resume
        if not isinstance(raw, dict) or raw.get("version") != MANIFEST_VERSION:
            return None
        done = {int(k): v for k, v in raw.get("done", {}).items()}
        return cls(raw["input"], raw["options"], raw["plan"], done)

    def save(self, folder: Path) -> None:
        write_json_atomic(folder / "manifest.json", self.to_json())


_FLAG_NAMES = {
    "encode.encoder_options": "-e",
    "device_type": "--device",
    "encode.deinterlace": "--no-deinterlace",
}


def _flag(key: str) -> str:
    """The command-line flag behind a manifest option key (``upscale.color_fix`` -> ``--color-fix``)."""
    if key in _FLAG_NAMES:
        return _FLAG_NAMES[key]
    return "--" + key.rpartition(".")[2].replace("_", "-")


def _describe(key: str, old: Any, new: Any) -> str:
    return f"{_flag(key)} was {old!r}, now {new!r}"


def differences(m: Manifest, identity: dict[str, Any], options: dict[str, Any]) -> list[str]:
    """What differs between the work folder's run and this one, in words."""
    out = []
    names = {"size": "size", "mtime_ns": "modification time", "head_tail_sha256": "content"}
    for k, label in names.items():
        if m.input.get(k) != identity.get(k):
            out.append(f"the input's {label} changed")
    for k in sorted(set(m.options) | set(options)):
        if m.options.get(k) != options.get(k):
            out.append(_describe(k, m.options.get(k), options.get(k)))
    return out


# ----------------------------------------------------------------------------- the lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_gone(host: str, pid: int, mtime: float, now: float | None = None) -> bool:
    """Whether a file's owner is provably gone: same host and dead pid, or untouched too long."""
    now = time.time() if now is None else now
    if now - mtime > STALE_AFTER_S:
        return True
    return host == host_name() and pid != os.getpid() and not _pid_alive(pid)


def _read_lock(path: Path) -> tuple[str, int, float] | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return str(d["host"]), int(d["pid"]), path.stat().st_mtime
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        with contextlib.suppress(OSError):
            return "?", -1, path.stat().st_mtime  # torn: gone only once it is old
        return None


class WorkLock:
    """Exclusive ownership of a work folder by this process (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "lock"
        self.held = False

    def acquire(self, output_name: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"host": host_name(), "pid": os.getpid(), "started": time.time()})
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = _read_lock(self.path)
                if owner is None:
                    continue  # released meanwhile
                host, pid, mtime = owner
                if not owner_gone(host, pid, mtime):
                    raise WorkFolderBusy(
                        f"{output_name}: another run (host {host}, process {pid}) is working on "
                        f"this output in {self.folder}; wait for it to finish"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(body)
            self.held = True
            return
        raise WorkFolderBusy(f"{output_name}: could not take the lock {self.path}")

    def touch(self) -> None:
        if self.held:
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if self.held:
            self.held = False
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def remove_work_dir(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete ``*.<host>-<pid>.*`` temp files in ``folder`` whose owner is provably gone."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            owner = parse_owner(entry.name)
            if owner is None:
                continue
            with contextlib.suppress(OSError):
                if owner_gone(*owner, entry.stat(follow_symlinks=False).st_mtime):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


_TEMP_RE = re.compile(r"^\.(?P<base>.+)\.(?P<host>[^.]+)-(?P<pid>\d+)\.(?:part(?:\.[^.]+)?|tmp)$")


def temp_name(final: Path) -> Path:
    """``.<name>.<host>-<pid>.part<ext>`` beside ``final`` (the real extension kept last)."""
    return final.with_name(f".{final.stem}.{owner_tag()}.part{final.suffix}")


def parse_owner(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` from a name made by :func:`temp_name` or :func:`write_json_atomic`."""
    m = _TEMP_RE.match(name)
    return (m.group("host"), int(m.group("pid"))) if m else None
