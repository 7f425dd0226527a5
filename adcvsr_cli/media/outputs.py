"""Output paths: naming, temporary files beside the target, and atomic publishing.

A file appears at its final path only after it was written and verified: it is written to a
hidden ``.<stem>.adcvsr-<pid>-<token>.part<ext>`` beside the target, fsynced, then published
with ``os.replace`` (overwrite) or ``os.link`` (no-clobber).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from ..errors import UsageError, VideoError
from ..workdir import host_name, owner_gone, owner_tag
from .common import _display, _err_text, _is_broken_pipe, _os_errno
from .types import BrokenOutputPipe, OutputExists

_IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
_WRITABLE_IMAGE_EXTS = {".png", ".jpg", ".jpeg"}

# Container chosen for an output extension.
_EXT_FORMAT = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".ts": "mpegts",
    ".m2ts": "mpegts",
    ".mts": "mpegts",
    ".nut": "nut",
    ".flv": "flv",
    ".3gp": "3gp",
}
_MP4_FAMILY = {"mp4", "mov", "3gp", "3g2", "ipod", "ismv"}
_FRAGMENTED_MOVFLAGS = "frag_keyframe+empty_moov+delay_moov+default_base_moof"


_EXISTS_HINT = "use --overwrite / -y to replace it"


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True when the name ends in an image extension (and is not a ``%d`` sequence pattern)."""
    p = os.fspath(path)
    return Path(p).suffix.lower() in _IMAGE_EXTS and not is_sequence_pattern(p)


_SEQUENCE_FIELD = re.compile(r"%(0[1-9]\d*)?d")


def is_sequence_pattern(path: str | os.PathLike[str]) -> bool:
    """True for an image-sequence pattern such as ``frames/%06d.png``: an image name with
    exactly one ``%d`` or ``%0Nd`` field. Any other ``%`` (``big 100% done.png``) is part of
    an ordinary name."""
    name = os.path.basename(os.fspath(path))
    if Path(name).suffix.lower() not in _IMAGE_EXTS:
        return False
    return len(_SEQUENCE_FIELD.findall(name)) == 1


def sequence_name(pattern: str, i: int) -> str:
    """The file name of frame ``i`` (from 1) of a sequence ``pattern``; other ``%`` stay."""
    m = _SEQUENCE_FIELD.search(pattern)
    assert m is not None, pattern
    digits = str(i).zfill(int(m.group(1)) if m.group(1) else 0)
    return pattern[: m.start()] + digits + pattern[m.end() :]


def resolve_output_path(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None) -> Path:
    """Where the output of ``src`` goes.

    - ``dst`` is ``None``: beside the input, as ``<stem>_x4<ext>``.
    - ``dst`` is an existing folder, or ends with a path separator: inside it, under the
      input's file name.
    - ``"-"`` stays ``"-"`` (standard output); anything else is taken as the file name.
    """
    s = os.fspath(src)
    if dst is None:
        if s == "-":
            raise UsageError("reading from standard input needs an output path (or '-')")
        p = Path(s)
        return p.with_name(f"{p.stem}_x4{p.suffix}")
    d = os.fspath(dst)
    if d == "-":
        return Path("-")
    if os.path.isdir(d) or d.endswith((os.sep, "/")):
        if s == "-":
            raise UsageError("reading from standard input: give an output file name, not a folder")
        return Path(d) / Path(s).name
    return Path(d)


_LIVE_TEMPS: set[str] = set()
_LIVE_TEMPS_LOCK = threading.Lock()


def _temp_path(final: str) -> str:
    p = Path(os.path.abspath(final))
    token = secrets.token_hex(4)
    # The host as well as the pid: on shared storage another node's live files look the same.
    tmp = str(p.with_name(f".{p.stem}.adcvsr-{owner_tag()}-{token}.part{p.suffix}"))
    with _LIVE_TEMPS_LOCK:
        _LIVE_TEMPS.add(tmp)
    return tmp


def remove_live_temps() -> list[str]:
    """Delete the temporary outputs this process has made and not yet published or removed.

    For a last-resort exit (a signal arrived while the main thread is stuck in one long native
    call and cannot run its own cleanup): published temps were renamed away and no longer exist
    under their temporary names, so only unfinished ones are touched. Safe from any thread.
    """
    removed = []
    with _LIVE_TEMPS_LOCK:
        paths = sorted(_LIVE_TEMPS)
        _LIVE_TEMPS.clear()
    for tmp in paths:
        try:
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.unlink(tmp)
            removed.append(tmp)
        except FileNotFoundError:
            pass
        except OSError:
            pass
    return removed


def _publish(tmp: str, final: str, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # fails with EEXIST if something appeared meanwhile
    except FileExistsError:
        raise OutputExists(f"{final}: output exists ({_EXISTS_HINT})") from None
    except OSError:
        if os.path.lexists(final):
            raise OutputExists(f"{final}: output exists ({_EXISTS_HINT})") from None
        os.replace(tmp, final)
        return
    os.unlink(tmp)


# ``.<stem>.adcvsr-<host>-<pid>-<token>.part<ext>``; names without a host are from older runs.
_PART_RE = re.compile(
    r"^\..*\.adcvsr-(?:(?P<host>[A-Za-z0-9_-]+)-)?(?P<pid>\d+)-[0-9a-f]{8}\.part(\.[^.]*)?$"
)


def remove_stale_parts(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary ``.adcvsr-<host>-<pid>-*.part`` files (or sequence folders) left in
    ``folder`` by runs that are provably gone: on this host with a dead process (a kill -9, a
    power cut), or untouched for longer than any run leaves a file alone (another node that
    died). Returns what was removed; live processes' files, here or elsewhere, stay."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _PART_RE.match(entry.name)
        if not m:
            continue
        host = m.group("host") or host_name()
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if not owner_gone(host, int(m.group("pid")), mtime):
            continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                for child in os.scandir(path):
                    os.unlink(child.path)
                os.rmdir(path)
            else:
                os.unlink(path)
            removed.append(path)
    return removed


def _fsync_dir(d: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _write_atomic_bytes(path: str, data: bytes, *, overwrite: bool = True) -> None:
    d = os.path.dirname(os.path.abspath(path)) or "."
    tmp = _temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, path, overwrite)
        _fsync_dir(d)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _create_temp_file(final: str, name: str) -> str:
    tmp = _temp_path(final)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
    except OSError as e:
        raise _folder_error(e, name, os.path.dirname(tmp)) from e
    return tmp


def _folder_error(e: OSError, name: str, folder: str) -> VideoError:
    """The error for a temporary output that cannot be created in ``folder``."""
    if isinstance(e, FileNotFoundError):
        return VideoError(f"{name}: output folder {folder} does not exist")
    if isinstance(e, NotADirectoryError):
        return VideoError(f"{name}: output folder {folder} is not a folder")
    return _wrap_write_error(e, name)


def _wrap_write_error(e: BaseException, name: str) -> VideoError:
    if isinstance(e, VideoError):
        return e
    if _is_broken_pipe(e):
        return BrokenOutputPipe(f"{name}: the reader closed the output pipe early")
    n = _os_errno(e)
    if n == errno.ENOSPC:
        return VideoError(f"{name}: no space left on device while writing")
    if n == errno.EFBIG:
        return VideoError(f"{name}: file too large (file size limit reached) while writing")
    if n == errno.EROFS:
        return VideoError(f"{name}: read-only file system")
    if n in (errno.EACCES, errno.EPERM):
        return VideoError(f"{name}: permission denied")
    return VideoError(f"{name}: cannot write: {_err_text(e)}")


@dataclass
class Target:
    """Where one run's output goes, and the temporary file or folder it is written to first.

    ``kind`` is ``"file"`` (a container file), ``"pipe"`` (stdout, a file object, a FIFO or
    a device: written directly), ``"image"`` (one still image) or ``"sequence"`` (numbered
    PNG files from a pattern such as ``out/%06d.png``).
    """

    kind: str
    name: str
    final: str | None = None
    pipe: Any = None
    own_pipe: bool = False  # a FIFO or device we open (and close) ourselves
    fmt: str = ""
    bad_image_ext: bool = False
    tmp: str | None = None
    tmpdir: str | None = None

    def prepare(self) -> None:
        """Create the temporary output now: an unwritable folder fails before any decoding."""
        if self.kind in ("file", "image"):
            assert self.final is not None
            self.tmp = _create_temp_file(self.final, self.name)
        elif self.kind == "sequence":
            assert self.final is not None
            self.tmpdir = _make_temp_dir(self.final, self.name)

    def open_pipe(self) -> None:
        if self.own_pipe:
            assert self.final is not None
            try:
                self.pipe = open(self.final, "wb")  # noqa: SIM115 - closed by close_pipe
            except OSError as e:
                raise _wrap_write_error(e, self.name) from e

    def close_pipe(self) -> None:
        if self.own_pipe and self.pipe is not None:
            pipe, self.pipe = self.pipe, None
            try:
                pipe.close()
            except OSError as e:
                raise _wrap_write_error(e, self.name) from e

    def publish(self, overwrite: bool, sink: Any) -> int:
        """Move the verified output to its final path; returns the bytes written (files)."""
        try:
            if self.kind == "sequence":
                sink.publish(overwrite)
                self.tmpdir = None
                return 0
            if self.kind not in ("file", "image"):
                return 0
            assert self.tmp is not None and self.final is not None
            _publish(self.tmp, self.final, overwrite)
        except OutputExists:
            raise
        except OSError as e:
            raise _wrap_write_error(e, self.name) from e
        self.tmp = None
        _fsync_dir(os.path.dirname(self.final))
        return os.path.getsize(self.final)

    def cleanup(self) -> None:
        """Remove whatever was not published (safe to call more than once)."""
        if self.own_pipe and self.pipe is not None:
            with contextlib.suppress(OSError):
                self.pipe.close()
            self.pipe = None
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None
        if self.tmpdir is not None:
            with contextlib.suppress(OSError):
                for n in os.listdir(self.tmpdir):
                    os.unlink(os.path.join(self.tmpdir, n))
                os.rmdir(self.tmpdir)
            self.tmpdir = None


def _make_temp_dir(final: str, name: str) -> str:
    folder = os.path.dirname(final)
    base = _temp_path(os.path.join(folder, "frames"))
    tmpdir = base[: -len(Path(base).suffix)] if Path(base).suffix else base
    try:
        os.mkdir(tmpdir)
    except OSError as e:
        raise _folder_error(e, name, folder) from e
    return tmpdir


def plan_target(
    dst: Any, overwrite: bool, fmt: str | None, src_path: str | None, name_in: str
) -> Target:
    """Decide where ``dst`` (a path, ``"-"`` or a file object) is written, refusing what
    cannot work (a terminal, a folder, the input itself, an existing file without
    ``overwrite``, an unknown container) before anything is read."""
    if not isinstance(dst, (str, os.PathLike)):
        target = Target("pipe", _display(dst), pipe=dst)
    elif os.fspath(dst) == "-":
        target = Target("pipe", "<stdout>", pipe=_stdout())
    else:
        target = _file_target(os.fspath(dst), overwrite, src_path, name_in)
    if target.kind in ("file", "pipe"):
        target.fmt = _container_for(target, fmt)
    return target


def _stdout() -> Any:
    out_buf = sys.stdout.buffer
    try:
        tty = out_buf.isatty()
    except (AttributeError, ValueError, OSError):
        tty = False
    if tty:
        raise UsageError("refusing to write video to a terminal; redirect standard output")
    return out_buf


def _file_target(name: str, overwrite: bool, src_path: str | None, name_in: str) -> Target:
    final = os.path.abspath(name)
    target = Target("file", name, final=final)
    if is_sequence_pattern(final):
        target.kind = "sequence"
        if Path(final).suffix.lower() != ".png":
            raise UsageError(f"{name}: image sequences are written as PNG (use %06d.png)")
    elif is_image_path(final):
        target.kind = "image"
        # Refused once the input is known: a video gets another message than an image.
        target.bad_image_ext = Path(final).suffix.lower() not in _WRITABLE_IMAGE_EXTS
    if os.path.isdir(final):
        raise UsageError(f"{name}: is a folder; give an output file name inside it")
    if src_path and os.path.exists(final) and _same_file(src_path, final):
        raise VideoError(f"{name}: output is the input file {name_in}; refusing to overwrite it")
    if os.path.exists(final) and not stat.S_ISREG(os.stat(final).st_mode):
        # A FIFO or a device (/dev/null): written directly, nothing to make atomic.
        target.kind, target.own_pipe = "pipe", True
    elif target.kind != "sequence" and os.path.lexists(final) and not overwrite:
        raise OutputExists(f"{name}: output exists ({_EXISTS_HINT})")
    elif target.kind == "sequence" and not overwrite:
        first_file = os.path.join(os.path.dirname(final), sequence_name(os.path.basename(final), 1))
        if os.path.lexists(first_file):
            raise OutputExists(f"{first_file}: output exists ({_EXISTS_HINT})")
    return target


def _container_for(target: Target, fmt: str | None) -> str:
    if not fmt and target.final is not None:
        ext = Path(target.final).suffix.lower()
        fmt = _EXT_FORMAT.get(ext, "")
        if not fmt:
            raise UsageError(
                f"{target.name}: cannot tell the container from '{ext or 'no extension'}'; use "
                f"one of {', '.join(sorted(_EXT_FORMAT))}, or choose the container with "
                "--format"
            )
    fmt = fmt or "matroska"
    if fmt not in av.formats_available:
        raise UsageError(f"unknown container format '{fmt}'")
    if target.own_pipe and fmt in _MP4_FAMILY:
        raise UsageError(
            f"{target.name}: plain MP4 cannot be written to a pipe or device; write to '-' with "
            "--format mp4 (fragmented MP4) or use .mkv"
        )
    return fmt
