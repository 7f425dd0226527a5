"""``adcvsr quality IN OUT``: the flicker meter (temporal consistency without ground truth)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import AdcvsrError
from .app import app, fail

QUALITY_HELP = """Measure the flicker of an upscaled video OUT against its input IN.

The warping error between consecutive output frames, with the motion taken from IN upscaled
with bicubic (so the network cannot steer it) and occluded pixels left out, per frame pair and
as the mean E*warp (x10^-3, lower is steadier), beside the same figure for the bicubic upscale
of IN as the baseline. Jumps at the run's chunk seams and tile seams (placed by the same
--chunk, --chunk-overlap, --tile and --tile-overlap as the upscale run) are set against the
jumps elsewhere. Needs OpenCV: pip install 'adcvsr[quality]'; --plot needs 'adcvsr[plot]'.

Examples:

\b
  adcvsr quality in.mp4 out.mp4
  adcvsr quality in.mp4 out.mp4 --json > flicker.json
  adcvsr quality in.mp4 out.mp4 --plot flicker.png --chunk 25 --tile 0
"""


@app.command(help=QUALITY_HELP, no_args_is_help=True)
def quality(
    input: Annotated[Path, typer.Argument(metavar="IN", help="The input that was upscaled.")],
    output: Annotated[Path, typer.Argument(metavar="OUT", help="Its upscale.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object on standard output.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Draw the per-frame error to this PNG.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", "-y", help="Replace an existing --plot file.")
    ] = False,
    chunk: Annotated[int, typer.Option(help="--chunk of the upscale run.")] = 25,
    chunk_overlap: Annotated[int, typer.Option(help="--chunk-overlap of the upscale run.")] = 4,
    tile: Annotated[
        str, typer.Option(help="--tile of the upscale run (auto: planned as upscale plans it).")
    ] = "auto",
    tile_overlap: Annotated[int, typer.Option(help="--tile-overlap of the upscale run.")] = 32,
    device: Annotated[
        str, typer.Option(help="--device of the upscale run (for --tile auto).")
    ] = "auto",
    no_scene_split: Annotated[
        bool, typer.Option("--no-scene-split", help="The run let chunks span scene cuts.")
    ] = False,
) -> None:
    from ..quality import load_cv2, measure

    try:
        load_cv2()
        if plot is not None:
            from ..plots import load_pyplot

            load_pyplot()
        tile_px = _tile(str(input), str(output), tile, tile_overlap, chunk, chunk_overlap, device)
        report = measure(
            input,
            output,
            chunk=chunk,
            chunk_overlap=chunk_overlap,
            tile=tile_px,
            tile_overlap=tile_overlap,
            scene_split=not no_scene_split,
        ).to_dict()
        if plot is not None:
            from ..plots import plot_quality

            plot_quality(report, plot, overwrite)
    except AdcvsrError as e:
        raise fail(None, e) from None
    if as_json:
        typer.echo(json.dumps(report))
    else:
        typer.echo(summary(report))
    if plot is not None and not as_json:
        typer.echo(f"plot written to {plot}")


def _tile(
    src: str, dst: str, tile: str, overlap: int, chunk: int, chunk_overlap: int, device: str
) -> int:
    """The tile side the upscale run used: a number as given, ``auto`` as the planner picks."""
    from ..pipeline import UpscaleOptions, dry_run_plan

    opts = UpscaleOptions(tile=tile, tile_overlap=overlap, chunk=chunk, chunk_overlap=chunk_overlap)
    opts.validate()
    if opts.tile != "auto":
        return int(opts.tile)
    return int(dry_run_plan(src, dst, opts, device=device).get("tile", 0))


def _n(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def summary(r: dict[str, Any]) -> str:
    """The report as a few lines for a person."""
    cs, ts, plan = r["chunk_seams"], r["tile_seams"], r["plan"]
    lines = [
        f"{r['output']}: E*warp {_n(r['ewarp'])} x10^-3 (bicubic upscale of the input: "
        f"{_n(r['ewarp_bicubic'])}); {r['frames']} frames, {r['pairs_measured']} pairs measured, "
        f"{100 * r['valid_fraction']:.1f} % of pixels with trusted motion ({r['flow']})",
    ]
    if cs["pairs"]:
        largest = ", ".join(f"frame {s['frame']} {_n(s['ewarp'])}" for s in cs["largest"])
        lines.append(
            f"chunk seams (--chunk {plan['chunk']} --chunk-overlap {plan['chunk_overlap']}): "
            f"{_n(cs['seam_mean'])} at seams vs {_n(cs['inside_mean'])} inside chunks "
            f"(median {_n(cs['inside_median'])}, max {_n(cs['inside_max'])}); largest: {largest}"
        )
    else:
        lines.append(f"chunk seams: none (one chunk of up to {plan['chunk']} frames per shot)")
    if ts["rows"] or ts["cols"]:
        lines.append(
            f"tile seams (--tile {plan['tile']}): {_n(ts['seam_ewarp'])} in the overlap bands vs "
            f"{_n(ts['interior_ewarp'])} elsewhere"
        )
    else:
        lines.append("tile seams: none (whole frames)")
    cuts = r["scene_cuts"]
    lines.append(
        f"scene cuts at frames {', '.join(map(str, cuts))} (not measured across)"
        if cuts
        else "scene cuts: none"
    )
    return "\n".join(lines)
