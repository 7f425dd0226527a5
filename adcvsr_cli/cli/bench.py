"""``adcvsr bench``: the speed of the network and of whole runs (the benchmark is bench.py's)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import AdcvsrError, UsageError
from .app import app, fail

WHAT = "What to measure"
NETWORK = "Network"
REPORT = "Report"
DEMO_CLIP = Path("media", "dove-demo", "005.mp4")

BENCH_HELP = """Measure the speed of the network and of whole runs.

Protocol A times the network on 25 frames of 128x128 (512x512 out), B one 854x480 frame with
automatic tiles (3416x1920 out), C a file-to-file upscale of a demo clip. On a CUDA card these
are the sizes; on a CPU smaller sizes and a small random network keep it to a few minutes
(about 3 on a 2-core machine). The table is printed on standard output; --json FILE also
writes the whole report, --plot FILE a chart.

Protocol C reads the demo clip given by --clip, else shared/media/dove-demo/005.mp4 in the
current folder or its parent; without one it generates a short clip.

Examples:

\b
  adcvsr bench
  adcvsr bench --protocols A --variants pipeline,eager --json bench.json
  adcvsr bench --weights adcsr.safetensors --device cuda --full
"""


def demo_shared(clip: Path | None) -> Path | None:
    """The folder holding media/dove-demo/, looked for where the user is (unless --clip)."""
    if clip is not None:
        return None
    for root in (Path.cwd() / "shared", Path.cwd().parent / "shared"):
        if (root / DEMO_CLIP).is_file():
            return root
    return None


@app.command(help=BENCH_HELP)
def bench(
    protocols: Annotated[
        str, typer.Option(help="Protocols to run: A, B, C, comma-separated.", rich_help_panel=WHAT)
    ] = "A,B,C",
    variants: Annotated[
        str | None,
        typer.Option(
            help="Network variants, comma-separated, e.g. pipeline,eager,channels_last,compile "
            "(default: those that suit the device).",
            rich_help_panel=WHAT,
        ),
    ] = None,
    compile: Annotated[
        bool,
        typer.Option("--compile", help="Add the torch.compile variants.", rich_help_panel=WHAT),
    ] = False,
    small: Annotated[
        bool | None,
        typer.Option(
            "--small/--full",
            help="Small sizes (default on a CPU) or the full ones (default on CUDA).",
            rich_help_panel=WHAT,
        ),
    ] = None,
    runs: Annotated[
        int, typer.Option(help="Timed runs of each measurement.", rich_help_panel=WHAT)
    ] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.", rich_help_panel=WHAT)] = 3,
    clip: Annotated[
        Path | None,
        typer.Option(
            help="Input of protocol C (default: the demo clip, see above).", rich_help_panel=WHAT
        ),
    ] = None,
    flicker: Annotated[
        bool,
        typer.Option(
            "--flicker",
            help="Protocol C: also measure each output's flicker (needs the quality extra: "
            "pip install 'adcvsr[quality]').",
            rich_help_panel=WHAT,
        ),
    ] = False,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="A native .safetensors file (default: random weights).", rich_help_panel=NETWORK
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto, cpu, cuda or cuda:N.", rich_help_panel=NETWORK)
    ] = "auto",
    precision: Annotated[
        str, typer.Option(help="auto, bf16, fp16 or fp32.", rich_help_panel=NETWORK)
    ] = "auto",
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for the network.", rich_help_panel=NETWORK)
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json",
            metavar="FILE",
            help="Also write the whole report to FILE (JSON).",
            rich_help_panel=REPORT,
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Also draw the table as a PNG chart (needs the plot extra: pip install 'adcvsr[plot]').",
            rich_help_panel=REPORT,
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress lines.", rich_help_panel=REPORT)
    ] = False,
) -> None:
    from .. import bench as benchmark

    def on_event(e: dict) -> None:
        if e.get("type") == "warning" or (not quiet and e.get("type") == "bench"):
            typer.echo(
                f"{'warning: ' if e.get('type') == 'warning' else ''}{e.get('message')}", err=True
            )

    try:
        if protocols.replace(" ", "") == "" or set(protocols.upper().split(",")) - {"A", "B", "C"}:
            raise UsageError(f"--protocols {protocols}: use A, B and/or C, comma-separated")
        if plot is not None:  # a missing extra is named before minutes of benchmarking
            from ..plots import load_pyplot

            load_pyplot()
        if flicker:
            from ..quality import load_cv2

            load_cv2()
        report = benchmark.run_benchmark(
            protocols=protocols.upper().split(","),
            device=device,
            precision=precision,
            weights=weights,
            runs=runs,
            warmup=warmup,
            small=small,
            compile=compile,
            out_json=json_path,
            on_event=on_event,
            variants=variants,
            clip=clip,
            shared=demo_shared(clip),
            threads=threads,
            flicker=flicker,
        )
        if plot is not None:
            from ..plots import plot_bench

            plot_bench(report, plot, overwrite=True)
    except AdcvsrError as e:
        raise fail(None, e) from None
    typer.echo(benchmark.format_report(report))
    if json_path is not None:
        typer.echo(f"report written to {json_path}", err=True)
    if plot is not None:
        typer.echo(f"chart written to {plot}", err=True)
