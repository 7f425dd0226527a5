"""``adcvsr upscale --compare split|side``: an A/B video, bicubic against the network.

``side`` writes the two upscales next to each other (twice the width); ``split`` writes one frame
whose left half is the bicubic upscale and whose right half is the network's, with a thin line
between. Each half carries a label. The network's frames are those of a normal run (same plan,
tiles, colour fix); this only wraps the frame processor, so audio, subtitles and timing are kept
as in any run.

The labels are drawn once with Pillow (the ``preview`` extra) and stamped onto every frame.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .errors import UsageError
from .reference import bicubic

COMPARE_MODES = ("split", "side")
DIVIDER = 2  # pixels of the line between the halves of a split frame

FrameProcessor = Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]


def check_mode(mode: str | None) -> None:
    if mode is not None and mode not in COMPARE_MODES:
        raise UsageError(f"--compare {mode!r} is not one of {', '.join(COMPARE_MODES)}")


def short_name(source: str) -> str:
    """A model label: the registry name, or the file name of a checkpoint path."""
    first = source.split(" ")[0] if source else "network"
    return os.path.basename(first) or first


def label_patch(text: str, height: int) -> tuple[np.ndarray, np.ndarray]:
    """``text`` in white on a dark box: (h, w, 3) float32 colour and (h, w, 1) alpha in [0, 1]."""
    from .preview import load_pil

    PIL = load_pil()
    size = max(10, height)
    font = PIL.ImageFont.load_default(size=size)
    x0, y0, x1, y1 = font.getbbox(text)
    pad = max(2, size // 4)
    w, h = x1 + 2 * pad, y1 + 2 * pad
    mask = PIL.Image.new("L", (w, h), 0)
    PIL.ImageDraw.Draw(mask).text((pad, pad), text, font=font, fill=255)
    glyph = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    colour = np.repeat(glyph, 3, axis=-1)  # white text ...
    alpha = np.maximum(glyph, 0.6)  # ... on a 60 % black box
    return colour, alpha


def stamp(frame: np.ndarray, patch: tuple[np.ndarray, np.ndarray], x: int, y: int) -> None:
    """Blend a label onto ``frame`` in place at (x, y), clipped to the frame."""
    colour, alpha = patch
    h = min(colour.shape[0], frame.shape[0] - y)
    w = min(colour.shape[1], frame.shape[1] - x)
    if h <= 0 or w <= 0:
        return
    maxval = 255.0 if frame.dtype == np.uint8 else 65535.0
    region = frame[y : y + h, x : x + w].astype(np.float32)
    a = alpha[:h, :w]
    out = region * (1 - a) + colour[:h, :w] * maxval * a
    frame[y : y + h, x : x + w] = np.clip(np.rint(out), 0, maxval).astype(frame.dtype)


def compose(mode: str, bic: np.ndarray, net: np.ndarray, labels: tuple[Any, Any]) -> np.ndarray:
    """One A/B frame from the bicubic and network frames of the same size."""
    h, w = net.shape[:2]
    margin = max(4, h // 60)
    if mode == "side":
        out = np.concatenate([bic, net], axis=1)
        stamp(out, labels[0], margin, margin)
        stamp(out, labels[1], w + margin, margin)
        return out
    half = w // 2
    out = net.copy()
    out[:, :half] = bic[:, :half]
    maxval = 255 if net.dtype == np.uint8 else 65535
    out[:, max(0, half - DIVIDER // 2) : half + DIVIDER - DIVIDER // 2] = maxval
    stamp(out, labels[0], margin, margin)
    stamp(out, labels[1], half + margin, margin)
    return out


def ab_processor(
    process: FrameProcessor,
    mode: str,
    media_size: Callable[[Any], tuple[int, int]],
    model: str,
) -> tuple[FrameProcessor, Callable[[Any], tuple[int, int]]]:
    """Wrap a run's frame processor and its output-size function for ``--compare mode``.

    The network still makes frames of the asked size; the media layer is told the A/B size
    (twice as wide for ``side``).
    """
    from .preview import load_pil

    check_mode(mode)
    load_pil()  # before any frame is decoded: a missing extra is named up front
    sizes: list[tuple[int, int]] = []

    def ab_size(info: Any) -> tuple[int, int]:
        sizes.append(media_size(info))
        w, h = sizes[-1]
        return (2 * w, h) if mode == "side" else (w, h)

    def run(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        held: collections.deque[np.ndarray] = collections.deque()

        def keep() -> Iterator[np.ndarray]:
            for f in frames:
                held.append(f)
                yield f

        labels: tuple[Any, Any] | None = None
        for net in process(keep()):
            h, w = net.shape[:2]
            if labels is None:
                px = max(10, h // 30)
                labels = (label_patch("bicubic", px), label_patch(f"adcvsr {model}", px))
            yield compose(mode, bicubic(held.popleft(), w, h), net, labels)

    return run, ab_size
