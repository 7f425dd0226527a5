"""The small commands: convert, models, download, bench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_ERROR, EXIT_PARTIAL, AdcvsrError, UsageError
from .app import app, fail
from .report import Reporter


@app.command(
    help="""Convert the released AdcSR files (weight/net_params_200.pkl and
weight/pretrained/halfDecoder.ckpt of Guaishou74851/AdcSR) into one native .safetensors file.

The pickles are read through an allow-list: a file that asks for code is refused and nothing of it runs.

Example:

  adcvsr convert --net-params net_params_200.pkl \\
      --half-decoder halfDecoder.ckpt -o adcsr-x4.safetensors
"""
)
def convert(
    net_params: Annotated[Path, typer.Option("--net-params", help="weight/net_params_200.pkl")],
    half_decoder: Annotated[
        Path, typer.Option("--half-decoder", help="weight/pretrained/halfDecoder.ckpt")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output .safetensors file.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary line.")] = False,
) -> None:
    from ..weights import convert_adcsr

    try:
        if out.exists() and out.is_dir():
            raise UsageError(f"{out}: is a folder; give the output file name")
        rep = convert_adcsr(net_params, half_decoder, out)
    except AdcvsrError as e:
        raise fail(None, e) from None
    if not quiet:
        typer.echo(
            f"wrote {rep.out}: {rep.tensors} tensors, {rep.parameters:,} parameters "
            f"({rep.aliases_merged} aliased keys merged, {len(rep.ignored_keys)} ignored) in {rep.seconds:.1f} s",
            err=True,
        )


# ----------------------------------------------------------------------------- models / download / info


@app.command(
    help="List the models of the registry: architecture, parameters, temporal blocks, cache state.\n\nExample:\n\n  adcvsr models --json"
)
def models(
    cache_dir: Annotated[Path | None, typer.Option(help="Weights cache.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document on standard output.")
    ] = False,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Do not hash cached files.")
    ] = False,
) -> None:
    from ..weights import list_models

    try:
        rows = list_models(cache_dir, verify=not no_verify)
    except AdcvsrError as e:
        raise fail(None, e) from None
    if as_json:
        typer.echo(
            json.dumps(
                [{**r.__dict__, "path": str(r.path) if r.path else None} for r in rows],
                indent=2,
                default=str,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="adcvsr models")
    # Short headers and unbroken values, so that an 80-column terminal shows whole names;
    # only the notes wrap.
    for c in ("name", "arch", "params", "temporal", "cache", "on disk"):
        t.add_column(c, no_wrap=True)
    t.add_column("notes", overflow="fold", min_width=12)
    for r in rows:
        t.add_row(
            r.name,
            r.architecture,
            f"{r.parameters / 1e6:.1f} M",
            "yes" if r.temporal_blocks else "no",
            ("verified" if r.verified else "yes") if r.cached else "no",
            f"{r.size_bytes / 2**20:.0f} MiB" if r.size_bytes else "-",
            "; ".join(
                filter(None, [r.detail or ("" if r.available else "not released yet"), _pin(r)])
            ),
        )
    Console().print(t)


def _pin(r) -> str:
    """Which commit a model is pinned to, and by whom (the registry, or its first download)."""
    if not r.available:
        return ""
    if r.commit is None:
        return "not pinned yet: the first download pins it"
    return f"pinned to {r.commit[:12]} by {'the registry' if r.pinned_by == 'registry' else 'its first download'}"


@app.command(
    help="Fetch, verify and convert registry models into the cache (default: adcsr-x4).\n\nExample:\n\n  adcvsr download adcsr-x4"
)
def download(
    names: Annotated[
        list[str] | None, typer.Argument(metavar="NAME", help="Registry names.")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Weights cache.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch and convert again even if cached.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or notices.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More detail (repeatable).")
    ] = 0,
) -> None:
    from ..weights import download as fetch

    reporter = Reporter(quiet=quiet, verbose=verbose, hub_logs=True)
    try:
        with reporter:
            results = fetch(
                names or None, cache_dir=cache_dir, force=force, on_event=reporter.on_event
            )
    except AdcvsrError as e:
        raise fail(reporter, e) from None
    bad = 0
    for r in results:
        if r.ok and r.weights is not None:
            typer.echo(f"{r.name}: ok  {r.weights.path}  sha256 {r.weights.sha256}", err=True)
        else:
            bad += 1
            reporter.error(f"{r.name}: {r.error}")
    if bad:
        raise typer.Exit(EXIT_ERROR if bad == len(results) else EXIT_PARTIAL)
