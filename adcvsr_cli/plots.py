"""Charts: the flicker meter's per-frame error (``adcvsr quality --plot``) and the benchmark's
table (``adcvsr bench --plot``).

matplotlib (the ``plot`` extra) draws them off screen (Agg), imported only here. Files are
written atomically as PNG; an existing file is replaced only when asked.
"""

from __future__ import annotations

import io
import os
from typing import Any

from .errors import UsageError, VideoError

SEAM_COLOUR = "#d62728"
CUT_COLOUR = "#7f7f7f"


def load_pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or a UsageError that says how to install it."""
    try:
        import matplotlib
    except ImportError as e:
        raise UsageError(
            "--plot needs matplotlib: pip install 'adcvsr[plot]' (or pip install matplotlib)"
        ) from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str], overwrite: bool) -> None:
    from .media import OutputExists
    from .media.outputs import _write_atomic_bytes

    p = os.fspath(path)
    if not p.lower().endswith(".png"):
        raise UsageError(f"--plot {p}: charts are written as PNG; give a name ending in .png")
    if os.path.lexists(p) and not overwrite:
        raise OutputExists(f"{p}: output exists (use -y/--overwrite to replace it)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    try:
        _write_atomic_bytes(p, buf.getvalue(), overwrite=overwrite)
    except OSError as e:
        raise VideoError(f"{p}: cannot write: {e.strerror or e}") from e


def _spans(pairs: list[int]) -> list[tuple[int, int]]:
    """Consecutive pair indices grouped into [first, last] runs."""
    out: list[tuple[int, int]] = []
    for t in sorted(pairs):
        if out and t == out[-1][1] + 1:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


def plot_quality(report: dict[str, Any], path: str | os.PathLike[str], overwrite: bool) -> None:
    """Per-frame warping error of the output and of the bicubic baseline; chunk seams shaded,
    scene cuts as dashed lines."""
    plt = load_pyplot()
    per, base = report["per_frame"], report["per_frame_bicubic"]
    xs = list(range(len(per)))
    fig, ax = plt.subplots(figsize=(10, 4))
    try:
        ax.plot(xs, [float("nan") if v is None else v for v in per], lw=1.4, label="output")
        ax.plot(
            xs,
            [float("nan") if v is None else v for v in base],
            lw=1.0,
            ls="--",
            label="bicubic baseline",
        )
        for a, b in _spans(report["chunk_seams"].get("pairs", [])):
            ax.axvspan(a - 0.5, b + 0.5, color=SEAM_COLOUR, alpha=0.15, lw=0)
        for c in report.get("scene_cuts", []):
            ax.axvline(c - 1, color=CUT_COLOUR, ls=":", lw=1)
        ax.plot([], [], color=SEAM_COLOUR, alpha=0.3, lw=6, label="chunk seams")
        if report.get("scene_cuts"):
            ax.plot([], [], color=CUT_COLOUR, ls=":", label="scene cuts (not measured)")
        ax.set_xlabel("frame pair (t, t+1)")
        ax.set_ylabel("warping error (x10^-3)")
        mean, mb = report.get("ewarp"), report.get("ewarp_bicubic")
        ax.set_title(
            f"{os.path.basename(report['output'])}: E*warp {_num(mean)}"
            f" (bicubic {_num(mb)}), {report['frames']} frames"
        )
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8, framealpha=0.85)
        fig.tight_layout()
        _save(fig, path, overwrite)
    finally:
        plt.close(fig)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def bench_rows(report: dict[str, Any]) -> list[tuple[str, str, float, float | None]]:
    """(protocol, label, fps, peak MiB) per successful benchmark entry."""
    rows = []
    for proto, entries in report.get("protocols", {}).items():
        for e in entries:
            if "error" in e or "fps" not in e:
                continue
            label = e["model"] + (f"/{e['clip']}" if "clip" in e else "")
            label += f" {e.get('variant', '')}".rstrip()
            peak = e.get("peak_memory_bytes")
            rows.append((proto, label, float(e["fps"]), peak / 2**20 if peak else None))
    return rows


def plot_bench(report: dict[str, Any], path: str | os.PathLike[str], overwrite: bool) -> None:
    """The benchmark table as horizontal bars: frames per second per entry, one panel per
    protocol, peak memory written beside each bar."""
    rows = bench_rows(report)
    if not rows:
        raise UsageError("--plot: the benchmark has no successful entry to draw")
    plt = load_pyplot()
    protos = sorted({r[0] for r in rows})
    heights = [sum(r[0] == p for r in rows) for p in protos]
    fig, axes = plt.subplots(
        len(protos),
        1,
        figsize=(10, 1.2 + 0.45 * sum(heights) + 0.6 * len(protos)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    try:
        for ax, proto in zip(axes[:, 0], protos, strict=True):
            mine = [r for r in rows if r[0] == proto]
            ys = list(range(len(mine)))
            ax.barh(ys, [r[2] for r in mine], color="#1f77b4")
            ax.set_yticks(ys, [r[1] for r in mine], fontsize=8)
            ax.invert_yaxis()
            ax.set_title(f"protocol {proto}", fontsize=9, loc="left")
            for y, r in zip(ys, mine, strict=True):
                note = f" {r[2]:.3g} fps" + (f", {r[3]:.0f} MiB" if r[3] else "")
                ax.text(r[2], y, note, va="center", fontsize=7)
            ax.set_xlim(0, max(r[2] for r in mine) * 1.35)
            ax.grid(axis="x", alpha=0.3)
        axes[-1, 0].set_xlabel("frames per second (median)")
        dev = report.get("device", {}).get("name", "")
        fig.suptitle(f"adcvsr bench - {dev} - {report.get('precision', '')}", fontsize=10)
        fig.tight_layout()
        _save(fig, path, overwrite)
    finally:
        plt.close(fig)
