"""``adcvsr preview``: a contact sheet to judge an upscale before running it on the whole video.

For a few frames (evenly spaced, or at given times) the sheet shows the input upscaled with
bicubic beside the network's output, as whole frames (scaled to fit) and as 1:1 crops of the most
detailed region, labelled with the time, the model and the plan.

The frames go through the very frame processor ``adcvsr upscale`` uses (same plan, tiles, colour
fix, output size), each with the frames a full run would process with it: its batch for an
image model, its chunks for a temporal one, with the full run's scene cuts, and under
``adain-temporal`` the frames of its shot before it (see :mod:`adcvsr_cli.shots`). So a crop on
the sheet is the corresponding pixels of the full run. Only those frames are upscaled; the
stretches around them scanned for scene cuts are only decoded, and the rest is not read.

Pillow (the ``preview`` extra) draws the labels and writes the PNG, imported only here.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compare import short_name
from .errors import UsageError, VideoError
from .frames import frame_pts, read_frames
from .ranges import index_at
from .reference import bicubic
from .shots import CutMap, Window, rules_for, windows_for

Box = tuple[int, int, int, int]  # x, y, width, height

DEFAULT_COUNT = 4
DEFAULT_CROP = 160  # output pixels: a 1:1 crop large enough to judge texture
DEFAULT_THUMB = 480  # whole frames are shown at most this wide
GAP = 8
LABEL_H = 22
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
MARK = (255, 200, 0)


def load_pil() -> Any:
    """The PIL package, or a UsageError that says how to install it."""
    try:
        import PIL.Image  # noqa: F401
        import PIL.ImageDraw  # noqa: F401
        import PIL.ImageFont  # noqa: F401
        import PIL.PngImagePlugin  # noqa: F401
    except ImportError as e:
        raise UsageError(
            "adcvsr preview needs Pillow to draw the sheet: pip install 'adcvsr[preview]' "
            "(or pip install pillow)"
        ) from e
    import PIL

    return PIL


@dataclass
class PreviewFrame:
    """One picked frame: index, time (seconds from the first frame), both upscales, the crop."""

    index: int
    time: float
    bicubic: np.ndarray
    network: np.ndarray
    crop: Box  # in output pixels
    cells: dict[str, Box] = field(default_factory=dict)  # where each picture sits on the sheet


@dataclass
class PreviewResult:
    sheet: np.ndarray  # (H, W, 3) uint8
    frames: list[PreviewFrame]
    labels: dict[str, Any]


# ----------------------------------------------------------------------------- picking


def pick_indices(times: list[float], count: int, at: list[float] | None) -> list[int]:
    """Frame indices: the first frame at or after each ``at`` time, else ``count`` evenly spaced
    (the middle of ``count`` equal parts). UsageError for a time past the end."""
    n = len(times)
    if at:
        out = []
        for t in at:
            i = index_at(times, t)
            if i >= n:
                raise UsageError(
                    f"--at {t:g}: past the end of the video ({times[-1]:.3f} s is the last frame)"
                )
            out.append(i)
        return sorted(set(out))
    if count < 1:
        raise UsageError(f"--count must be at least 1, got {count}")
    return sorted({min(n - 1, int((k + 0.5) * n / count)) for k in range(count)})


def detail_box(lr: np.ndarray, crop_lr: tuple[int, int]) -> tuple[int, int]:
    """Top-left (x, y) of the ``crop_lr`` (w, h) window of the input with the most gradient
    energy: where an upscaler's detail (or its lack) shows most."""
    g = lr.astype(np.float32).mean(-1)
    e = np.zeros_like(g)
    e[:, 1:] += np.diff(g, axis=1) ** 2
    e[1:, :] += np.diff(g, axis=0) ** 2
    cw, ch = crop_lr
    ii = np.pad(e.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = ii[ch:, cw:] - ii[:-ch, cw:] - ii[ch:, :-cw] + ii[:-ch, :-cw]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(x), int(y)


def crop_for(lr: np.ndarray, out_hw: tuple[int, int], crop: int) -> Box:
    """The crop in output pixels, placed on the most detailed region of the input."""
    h, w = lr.shape[:2]
    oh, ow = out_hw
    cw, ch = min(crop, ow), min(crop, oh)
    sx, sy = ow / w, oh / h
    lw, lh = max(1, min(w, round(cw / sx))), max(1, min(h, round(ch / sy)))
    x, y = detail_box(lr, (lw, lh))
    ox, oy = min(ow - cw, round(x * sx)), min(oh - ch, round(y * sy))
    return ox, oy, cw, ch


# ----------------------------------------------------------------------------- running


def run_windows(
    src: str,
    pts: list[int],
    windows: list[tuple[Window, list[int]]],
    processor_for: Callable[[Window], Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]],
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Run each window's frames (decoded from the keyframe before it) through its processor;
    keep the picked frames' input and output. Returns ``{index: (input frame, output frame)}``."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for w, picked in windows:
        lr: dict[int, np.ndarray] = {}
        want = set(picked)

        def feed(w: Window = w, want: set[int] = want, lr: dict = lr) -> Iterator[np.ndarray]:
            for f in read_frames(src, start=w.decode_start, pts=pts):
                if f.index >= w.decode_end:
                    return
                if f.index in want:
                    lr[f.index] = f.rgb
                yield f.rgb

        for i, sr in enumerate(processor_for(w)(feed()), w.decode_start):
            if i in want:
                out[i] = (lr[i], sr)
    missing = sorted({i for _, p in windows for i in p} - set(out))
    if missing:
        raise VideoError(f"{src}: frame {missing[0]} did not decode (the file ends early)")
    return out


def to8(a: np.ndarray) -> np.ndarray:
    """Display copy: uint16 frames shown at 8 bits."""
    return (a >> 8).astype(np.uint8) if a.dtype == np.uint16 else a


def make_preview(
    src: str | os.PathLike[str],
    upscaler: Any,
    options: Any,
    *,
    count: int = DEFAULT_COUNT,
    at: list[float] | None = None,
    crop: int = DEFAULT_CROP,
    thumb: int = DEFAULT_THUMB,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> PreviewResult:
    """Upscale the picked frames of ``src`` as ``adcvsr upscale`` would and draw the sheet.

    ``upscaler`` is a loaded :class:`~adcvsr_cli.pipeline.Upscaler`, ``options`` its
    :class:`~adcvsr_cli.pipeline.UpscaleOptions`. Raises UsageError / VideoError.
    """
    from .engine.upscaler import ChunkStats
    from .media import probe

    emit = on_event or (lambda e: None)
    if crop < 16 or thumb < 64:
        raise UsageError(f"--crop must be >= 16 and --thumb >= 64 pixels, got {crop} and {thumb}")
    load_pil()
    options.validate()
    src = os.fspath(src)
    info = probe(src)
    pts, tb = frame_pts(src)
    if not pts:
        raise VideoError(f"{src}: no video frame with a timestamp")
    times = [float((p - pts[0]) * tb) for p in pts]
    indices = pick_indices(times, count, at)
    size = options.size_for(info)  # as the full run to a video sizes it
    plan = upscaler.initial_plan(info.height, info.width, options)
    rules = rules_for(upscaler, options, info.height, info.width)
    # The full run's scene cuts around each picked frame, and the frames it is run with.
    windows = windows_for(CutMap(src, pts, options.scene_split), indices, rules)
    stats = ChunkStats()

    def processor_for(w: Window) -> Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]:
        return upscaler.processor(options, lambda _w, _h: size, emit, stats, cuts=w.cuts)

    got = run_windows(src, pts, windows, processor_for)
    frames = []
    for i in indices:
        lr, sr = got[i]
        frames.append(
            PreviewFrame(
                i, times[i], bicubic(lr, *size), sr, crop_for(lr, (size[1], size[0]), crop)
            )
        )
    labels = {
        "input": os.path.basename(src),
        "model": upscaler.source,
        "plan": stats.plan or plan.describe(),
        "color_fix": options.color_fix,
        "size": [info.width, info.height, size[0], size[1]],
        "frames": [{"index": f.index, "time": clock(f.time), "crop": list(f.crop)} for f in frames],
    }
    header = (
        f"{labels['input']}  {info.width}x{info.height} -> {size[0]}x{size[1]}",
        f"model {short_name(upscaler.source)}   {labels['plan']}   colour fix {options.color_fix}",
    )
    sheet = render(frames, header, thumb)
    labels["cells"] = [f.cells for f in frames]
    return PreviewResult(sheet, frames, labels)


# ----------------------------------------------------------------------------- drawing


def _thumb(a: np.ndarray, width: int) -> np.ndarray:
    h, w = a.shape[:2]
    if w <= width:
        return a
    return bicubic(a, width, max(1, round(h * width / w)))


def layout(frames: list[PreviewFrame], thumb: int) -> tuple[int, int, list[int]]:
    """Sheet width and height, and the top of each row (below its label strip)."""
    tw = min(thumb, frames[0].network.shape[1])
    th = max(round(f.network.shape[0] * tw / f.network.shape[1]) for f in frames)
    cw, ch = frames[0].crop[2], frames[0].crop[3]
    width = GAP + 2 * (tw + GAP) + 2 * (cw + GAP)
    tops, y = [], 3 * LABEL_H + GAP
    for _ in frames:
        tops.append(y + LABEL_H)
        y += LABEL_H + max(th, ch) + GAP
    return width, y, tops


def fit(text: str, font: Any, width: int) -> str:
    """``text`` cut with an ellipsis to ``width`` pixels in ``font``."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def render(
    frames: list[PreviewFrame], header: tuple[str, str], thumb: int = DEFAULT_THUMB
) -> np.ndarray:
    """Draw the sheet; fills each frame's ``cells`` with where its pictures went."""
    PIL = load_pil()
    width, height, tops = layout(frames, thumb)
    img = PIL.Image.new("RGB", (width, height), BACKGROUND)
    draw = PIL.ImageDraw.Draw(img)
    font = PIL.ImageFont.load_default(size=13)
    for k, line in enumerate(header):
        draw.text((GAP, 4 + k * LABEL_H), fit(line, font, width - 2 * GAP), font=font, fill=TEXT)
    tw = min(thumb, frames[0].network.shape[1])
    cw = frames[0].crop[2]
    xs = [GAP, GAP + tw + GAP, GAP + 2 * (tw + GAP), GAP + 2 * (tw + GAP) + cw + GAP]
    names = ("bicubic", "network", "bicubic 1:1", "network 1:1")
    for x, name in zip(xs, names, strict=True):
        draw.text((x, 2 * LABEL_H + 4), name, font=font, fill=TEXT)
    for f, top in zip(frames, tops, strict=True):
        draw.text(
            (GAP, top - LABEL_H + 4), f"{clock(f.time)}  frame {f.index}", font=font, fill=TEXT
        )
        x0, y0, w0, h0 = f.crop
        crops = [a[y0 : y0 + h0, x0 : x0 + w0] for a in (f.bicubic, f.network)]
        pics = [_thumb(f.bicubic, tw), _thumb(f.network, tw), *crops]
        for x, name, pic in zip(xs, names, pics, strict=True):
            img.paste(PIL.Image.fromarray(to8(pic)), (x, top))
            f.cells[name] = (x, top, pic.shape[1], pic.shape[0])
        s = tw / f.network.shape[1]
        for x in xs[:2]:
            rect = (x + x0 * s, top + y0 * s, x + (x0 + w0) * s - 1, top + (y0 + h0) * s - 1)
            draw.rectangle(rect, outline=MARK)
    return np.asarray(img, dtype=np.uint8).copy()


def clock(t: float) -> str:
    """Seconds -> ``HH:MM:SS.mmm``."""
    ms = round(t * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def encode_png(result: PreviewResult) -> bytes:
    """The sheet as PNG bytes, its labels also in a ``adcvsr.preview`` text chunk (JSON)."""
    PIL = load_pil()
    info = PIL.PngImagePlugin.PngInfo()
    info.add_text("adcvsr.preview", json.dumps(result.labels, sort_keys=True))
    buf = io.BytesIO()
    PIL.Image.fromarray(result.sheet).save(buf, format="PNG", pnginfo=info, optimize=True)
    return buf.getvalue()


def write_png(path: str | os.PathLike[str], result: PreviewResult, overwrite: bool) -> None:
    """Write the sheet atomically; an existing file is only replaced with ``overwrite``."""
    from .media import OutputExists
    from .media.outputs import _write_atomic_bytes

    p = os.fspath(path)
    if not p.lower().endswith(".png"):
        raise UsageError(f"-o {p}: the preview is a PNG image; give a name ending in .png")
    if os.path.lexists(p) and not overwrite:
        raise OutputExists(f"{p}: output exists (use -y/--overwrite to replace it)")
    try:
        _write_atomic_bytes(p, encode_png(result), overwrite=overwrite)
    except OSError as e:
        raise VideoError(f"{p}: cannot write: {e.strerror or e}") from e
