"""Turn the command line's INPUT... OUTPUT into a list of jobs (pure path logic, no media I/O)."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

VIDEO_EXTS = {
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".ts",
    ".m2ts",
    ".mts",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
    ".ogv",
    ".nut",
    ".mxf",
    ".gif",
    ".y4m",
    ".h264",
    ".hevc",
    ".ivf",
}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
# Images are written as PNG or JPEG; a folder's other images keep their name, as .png.
WRITABLE_IMAGE_EXTS = {".png", ".jpg", ".jpeg"}
MEDIA_EXTS = VIDEO_EXTS | IMAGE_EXTS
_PART_MARK = ".adcvsr-"


@dataclass(frozen=True)
class Job:
    src: str  # a path, or "-" for standard input
    dst: str  # a path, or "-" for standard output
    skip_reason: str | None = None  # set when the job is planned but will not run
    make_dirs: bool = False  # the output's folder is created by the run (folder outputs)
    note: str | None = None  # what the plan changed and says (an image written as PNG)


@dataclass
class JobPlan:
    jobs: list[Job]
    batch: bool  # folder or several inputs: per-file failures do not stop the run
    ignored: list[str]  # files that are not media (counted in the summary)


def is_media(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_EXTS


def _matches(rel: str, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def scan_folder(
    root: Path,
    *,
    recursive: bool,
    include: list[str],
    exclude: list[str],
    prune: Path | None = None,
) -> tuple[list[Path], list[str]]:
    """Media files under ``root`` (sorted), and the other files seen. Hidden files, symlinks
    and our own temporary ``.part`` files are skipped, and so is the folder ``prune`` (the
    output folder, when it lies inside the input folder: a rerun must not upscale outputs)."""
    found: list[Path] = []
    ignored: list[str] = []
    stack = [root]
    pruned = _real(prune) if prune is not None else None
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda entry: entry.name)
        except OSError as err:
            raise UsageError(f"{d}: cannot list the folder ({err.strerror or err})") from err
        for e in entries:
            if e.name.startswith(".") or _PART_MARK in e.name or e.is_symlink():
                continue
            p = Path(e.path)
            if e.is_dir():
                if recursive and (pruned is None or _real(p) != pruned):
                    stack.append(p)
                continue
            rel = p.relative_to(root).as_posix()
            if include and not _matches(rel, include):
                continue
            if exclude and _matches(rel, exclude):
                continue
            if is_media(p):
                found.append(p)
            else:
                ignored.append(rel)
    return sorted(found), sorted(ignored)


def _real(p: Path) -> str:
    return os.path.realpath(p)


def output_name(src: Path, *, suffix: str, ext: str | None) -> str:
    """``<stem><suffix><ext>``. ``ext`` replaces the extension of inputs of its own kind only:
    a video extension (``mkv``) applies to videos, an image one (``png``) to images, so a
    mixed folder keeps images as images and videos as videos."""
    e = ext if ext is None or ext.startswith(".") else f".{ext}"
    if e and (e.lower() in IMAGE_EXTS) != (src.suffix.lower() in IMAGE_EXTS):
        e = None
    if not e and src.suffix.lower() in IMAGE_EXTS - WRITABLE_IMAGE_EXTS:
        e = ".png"
    return f"{src.stem}{suffix}{e if e else src.suffix}"


def _note(src: str, dst: str) -> str | None:
    """The plan's word on an image whose format cannot be written."""
    ext = Path(src).suffix.lower()
    if ext in IMAGE_EXTS - WRITABLE_IMAGE_EXTS and Path(dst).suffix.lower() == ".png":
        return f"{ext} images cannot be written: {dst} is a PNG"
    return None


def plan_jobs(
    inputs: list[str],
    output: str,
    *,
    recursive: bool = False,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    suffix: str = "",
    ext: str | None = None,
    overwrite: bool = False,
    skip_existing: bool | None = None,
) -> JobPlan:
    """Pair each input with its output.

    - one file (or ``-``) and an output that is not a folder: file to file;
    - an existing folder as OUTPUT for one file: inside it, under the input's name;
    - a folder, or several inputs: OUTPUT is a folder (created), names keep the input's stem
      (``suffix``/``ext`` change them); ``--recursive`` mirrors the tree.
    ``skip_existing`` (default: on for batches) marks jobs whose output exists.
    """
    include, exclude = include or [], exclude or []
    if not inputs:
        raise UsageError("no input given")
    if "-" in inputs and len(inputs) > 1:
        raise UsageError("'-' (standard input) cannot be combined with other inputs")
    if output == "-" and (len(inputs) > 1 or any(Path(i).is_dir() for i in inputs if i != "-")):
        raise UsageError("several inputs cannot go to standard output: give an output folder")
    batch = len(inputs) > 1 or any(i != "-" and Path(i).is_dir() for i in inputs)
    skip = (batch if skip_existing is None else skip_existing) and not overwrite
    jobs: list[Job] = []
    ignored: list[str] = []
    if not batch:
        src = inputs[0]
        dst = output
        if output != "-" and (Path(output).is_dir() or output.endswith(os.sep)):
            if src == "-":
                raise UsageError("reading standard input needs an output file name, not a folder")
            dst = str(Path(output) / output_name(Path(src), suffix=suffix, ext=ext))
        jobs.append(Job(src, dst, _skip(dst, skip), make_dirs=dst != output, note=_note(src, dst)))
        return JobPlan(jobs, False, ignored)
    out_root = Path(output)
    what = "a folder needs" if len(inputs) == 1 else "several inputs need"
    if out_root.exists() and not out_root.is_dir():
        raise UsageError(f"{output}: {what} an output folder, and this is a file")
    if not out_root.exists() and is_media(out_root) and not output.endswith(("/", os.sep)):
        raise UsageError(
            f"{output}: {what} an output folder, and this looks like a file name "
            f"(give a folder, e.g. {out_root.with_suffix('')}/)"
        )
    seen: dict[str, str] = {}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files, other = scan_folder(
                p, recursive=recursive, include=include, exclude=exclude, prune=out_root
            )
            ignored += [str(p / o) for o in other]
            for f in files:
                rel = f.relative_to(p).parent
                target = out_root / rel / output_name(f, suffix=suffix, ext=ext)
                _add(jobs, seen, str(f), str(target), skip)
        else:
            if not p.exists():
                dst = str(out_root / output_name(p, suffix=suffix, ext=ext))
                jobs.append(Job(item, dst, make_dirs=True))
                continue  # reported as a failure of this file by the run
            if not is_media(p):
                ignored.append(item)
                continue
            _add(jobs, seen, item, str(out_root / output_name(p, suffix=suffix, ext=ext)), skip)
    # Writing beside the inputs (OUTPUT is an input folder, with --suffix): the outputs of an
    # earlier run are media files too; they are this run's targets, never its inputs.
    targets = {_real(Path(j.dst)): j for j in jobs}
    for j in jobs:
        if targets.get(_real(Path(j.src))) is j:
            raise UsageError(
                f"{j.src} would be written over itself: give another output folder, or --suffix "
                "or --ext"
            )
    kept = [j for j in jobs if _real(Path(j.src)) not in targets]
    return JobPlan(kept, True, ignored)


def _add(jobs: list[Job], seen: dict[str, str], src: str, dst: str, skip: bool) -> None:
    if dst in seen:
        raise UsageError(
            f"{src} and {seen[dst]} would both be written to {dst}: use --suffix or --ext, or separate runs"
        )
    seen[dst] = src
    jobs.append(Job(src, dst, _skip(dst, skip), make_dirs=True, note=_note(src, dst)))


def _skip(dst: str, skip: bool) -> str | None:
    if skip and dst != "-" and Path(dst).exists():
        return "output exists"
    return None
