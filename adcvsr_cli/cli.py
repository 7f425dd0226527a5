"""The ``adcvsr`` command line: a thin Typer layer over the library.

Exit codes: 0 all done, 1 error, 2 usage error, 3 some files of a batch failed, 130 interrupted
(143 on SIGTERM), 141 when the reader of standard output went away.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PARTIAL, EXIT_USAGE, AdcvsrError, UsageError

EXIT_SIGTERM = 143
EXIT_BROKEN_PIPE = 141

EXIT_CODES_HELP = (
    "Exit codes: 0 all done, 1 error, 2 usage error, 3 some files of a batch failed, "
    "130 interrupted (143 on SIGTERM), 141 standard output closed by its reader."
)

app = typer.Typer(
    name="adcvsr",
    help="Fast x4 real-world video super-resolution (AdcVSR / AdcSR) that keeps everything of "
    "the input but its resolution.\n\n" + EXIT_CODES_HELP,
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


# ----------------------------------------------------------------------------- output helpers


class Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler."""


class Reporter:
    """Turns library events into rich progress bars, log lines and JSON lines (all on stderr)."""

    def __init__(
        self,
        quiet: bool = False,
        verbose: int = 0,
        json_out: bool = False,
        json_file: Path | None = None,
    ) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.verbose = verbose
        self._json_stream: Any = None
        if json_file is not None:
            try:
                self._json_stream = open(json_file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            except OSError as e:
                raise UsageError(f"--json-file {json_file}: cannot open ({e.strerror or e})") from e
        elif json_out:
            self._json_stream = sys.stderr
        self.bars = not quiet and self._json_stream is not sys.stderr and sys.stderr.isatty()
        self.progress: Any = None
        self.task: Any = None
        self.batch_task: Any = None
        self.file = ""
        self._t0 = time.perf_counter()
        self._done0 = 0
        self._last_json = 0.0

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Reporter:
        if self.bars:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fps]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self._json_stream is not None and self._json_stream is not sys.stderr:
            self._json_stream.close()

    # -- output ---------------------------------------------------------------------------------
    def json(self, event: str, **fields: Any) -> None:
        if self._json_stream is None:
            return
        obj = {"event": event, "time": round(time.time(), 3), **fields}
        self._json_stream.write(json.dumps(obj, default=str) + "\n")
        self._json_stream.flush()

    def log(self, message: str, *, level: int = 0, style: str = "") -> None:
        if self.quiet or level > self.verbose:
            return
        if self._json_stream is sys.stderr:
            return  # stderr carries JSON lines only
        self.console.print(message, style=style or None, markup=False)

    def error(self, message: str) -> None:
        if self._json_stream is sys.stderr:
            self.json("error", message=message)
        else:
            self.console.print(f"adcvsr: error: {message}", style="red", markup=False)

    def warn(self, message: str) -> None:
        self.json("warning", file=self.file, message=message)
        if not self.quiet and self._json_stream is not sys.stderr:
            self.console.print(f"warning: {message}", style="yellow", markup=False)

    # -- batch ----------------------------------------------------------------------------------
    def start_batch(self, n: int) -> None:
        if self.progress is not None and n > 1:
            self.batch_task = self.progress.add_task("files", total=n, fps="")

    def advance_batch(self) -> None:
        if self.progress is not None and self.batch_task is not None:
            self.progress.advance(self.batch_task)

    def start_file(self, src: str, dst: str) -> None:
        self.file = src
        self._t0 = time.perf_counter()
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(
                Path(src).name if src != "-" else "stdin", total=None, fps=""
            )

    def on_event(self, e: dict[str, Any]) -> None:
        """The ``on_event`` callback handed to the library."""
        kind = e.get("type")
        if kind == "start":
            self.json(
                "start",
                file=self.file,
                output=e.get("output"),
                frames=e.get("frames"),
                width=e.get("width"),
                height=e.get("height"),
                out_width=e.get("out_width"),
                out_height=e.get("out_height"),
            )
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, total=e.get("frames"))
            self.log(
                f"{self.file}: {e.get('width')}x{e.get('height')} -> {e.get('out_width')}x{e.get('out_height')}, "
                f"{e.get('frames') or '?'} frames",
                level=1,
            )
        elif kind == "progress":
            done, total = e.get("frames_done", 0), e.get("frames_total")
            dt = time.perf_counter() - self._t0
            fps = done / dt if dt > 0 else 0.0
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, completed=done, total=total, fps=f"{fps:.2f} fps")
            now = time.perf_counter()
            if now - self._last_json >= 0.5:
                self._last_json = now
                self.json(
                    "progress",
                    file=self.file,
                    frames_done=done,
                    frames_total=total,
                    fps=round(fps, 3),
                )
        elif kind == "warning":
            self.warn(str(e.get("message")))
        elif kind == "plan":
            self.json("plan", file=self.file, **{k: v for k, v in e.items() if k != "type"})
            self.log(
                f"plan: device {e.get('device')}, {e.get('precision')}, tile {e.get('tile') or 'off'}, "
                f"chunk {e.get('chunk')} (overlap {e.get('chunk_overlap')})",
                level=1,
            )
        elif kind in ("download", "download_progress", "hash", "convert", "weights"):
            self.json(kind, **{k: v for k, v in e.items() if k != "type"})
            msg = e.get("message") or e.get("stage") or ""
            if msg:
                self.log(f"{kind}: {msg} {e.get('file', '')}".rstrip(), level=1)
        elif kind == "done":
            pass
        else:
            self.log(f"{kind}: {e}", level=2)


def _version_callback(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"adcvsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Fast x4 video super-resolution."""


def _fail(reporter: Reporter | None, e: AdcvsrError) -> typer.Exit:
    msg = str(e)
    if reporter is not None:
        reporter.error(msg)
    else:
        typer.echo(f"adcvsr: error: {msg}", err=True)
    return typer.Exit(e.exit_code)


def _parse_kv(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise UsageError(f"-e {it!r}: encoder options are key=value")
        k, v = it.split("=", 1)
        out[k.strip()] = v
    return out


# ----------------------------------------------------------------------------- upscale


UPSCALE_HELP = f"""Upscale videos or images x4 (or to any --scale/--width/--height).

INPUT... OUTPUT: one file to one file; a file into an existing folder; a folder (or several
inputs) into a folder; '-' reads standard input or writes standard output.

Examples:

  adcvsr upscale in.mp4 out.mp4

  adcvsr upscale clips/ upscaled/ --recursive --suffix _x4

  cat in.mkv | adcvsr upscale - - --format matroska > out.mkv

  adcvsr upscale photo.png photo_x4.png --color-fix adain

  adcvsr upscale in.mp4 out.mkv --dry-run

{EXIT_CODES_HELP}
"""


@app.command(help=UPSCALE_HELP, no_args_is_help=True)
def upscale(
    paths: Annotated[
        list[str],
        typer.Argument(metavar="INPUT... OUTPUT", help="Input files or folders, then the output."),
    ],
    scale: Annotated[
        float,
        typer.Option(
            "--scale",
            "-s",
            help="Output size / input size (any > 0; the network is x4, other sizes are resized from it).",
        ),
    ] = 4.0,
    width: Annotated[
        int | None,
        typer.Option(help="Output width (keeps the aspect ratio unless --height is given too)."),
    ] = None,
    height: Annotated[int | None, typer.Option(help="Output height.")] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            help="Registry name, a native .safetensors path or hf://owner/repo/path@revision (default: adcsr-x4)."
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Weights cache (default ~/.cache/adcvsr or $ADCVSR_CACHE).")
    ] = None,
    offline: Annotated[
        bool, typer.Option(help="Use cached weights only (also HF_HUB_OFFLINE=1).")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[
        str, typer.Option(help="auto (bf16/fp16 on CUDA, fp32 on CPU), bf16, fp16 or fp32.")
    ] = "auto",
    color_fix: Annotated[
        str | None,
        typer.Option(
            help="none, adain (per frame, the reference rule) or adain-temporal (smoothed over time; default)."
        ),
    ] = None,
    tile: Annotated[
        str,
        typer.Option(
            help="Tile side in input pixels (multiple of 16), 0 for whole frames, or auto."
        ),
    ] = "auto",
    tile_overlap: Annotated[
        int, typer.Option(help="Overlap of neighbouring tiles, input pixels.")
    ] = 32,
    chunk: Annotated[
        int, typer.Option(help="Frames per temporal chunk (the model was trained on 25).")
    ] = 25,
    chunk_overlap: Annotated[
        int, typer.Option(help="Frames shared by consecutive chunks (cross-faded).")
    ] = 4,
    batch_frames: Annotated[
        int | None,
        typer.Option(
            "--batch", help="Frames per network call for image models (default: --chunk)."
        ),
    ] = None,
    no_scene_split: Annotated[
        bool,
        typer.Option(
            "--no-scene-split", help="Let chunks and colour statistics span detected scene cuts."
        ),
    ] = False,
    codec: Annotated[
        str | None,
        typer.Option(help="Video encoder (default libx264; 10-bit input gives 10-bit output)."),
    ] = None,
    crf: Annotated[int | None, typer.Option(help="Constant rate factor (default 18).")] = None,
    preset: Annotated[str | None, typer.Option(help="Encoder preset (default medium).")] = None,
    pix_fmt: Annotated[
        str | None, typer.Option(help="Output pixel format (default follows the input).")
    ] = None,
    bitrate: Annotated[str | None, typer.Option(help="Target bitrate, e.g. 8M.")] = None,
    encoder_opt: Annotated[
        list[str] | None,
        typer.Option("-e", "--encoder-option", help="Extra encoder option key=value (repeatable)."),
    ] = None,
    audio_codec: Annotated[
        str | None,
        typer.Option(help="Transcode audio to this codec (e.g. aac) instead of copying it."),
    ] = None,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Drop audio streams.")] = False,
    no_subs: Annotated[bool, typer.Option("--no-subs", help="Drop subtitle streams.")] = False,
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Container for standard output: matroska (default), nut, mpegts or mp4 (fragmented).",
        ),
    ] = None,
    no_deinterlace: Annotated[
        bool, typer.Option("--no-deinterlace", help="Keep interlaced fields as they are.")
    ] = False,
    strict: Annotated[bool, typer.Option(help="Treat corrupt packets as errors.")] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            "-y",
            help="Replace existing outputs (only once the new one is complete).",
        ),
    ] = False,
    skip_existing: Annotated[
        bool | None,
        typer.Option(
            "--skip-existing/--no-skip-existing",
            help="Skip inputs whose output exists (default for folders).",
        ),
    ] = None,
    recursive: Annotated[
        bool,
        typer.Option("--recursive", "-r", help="Descend into sub-folders, mirroring the tree."),
    ] = False,
    glob: Annotated[
        list[str] | None,
        typer.Option("--glob", help="Only inputs matching this pattern (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Skip inputs matching this pattern (repeatable)."),
    ] = None,
    suffix: Annotated[
        str, typer.Option(help="Added to output names in folder mode, e.g. _x4.")
    ] = "",
    ext: Annotated[
        str | None, typer.Option(help="Output extension in folder mode, e.g. mkv.")
    ] = None,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile", help="torch.compile the network (CUDA; slow start, faster long runs)."
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the plan for each input; load no model, write nothing."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or notices.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More detail (repeatable).")
    ] = 0,
    json_lines: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Write JSON lines (start, progress, file_done, file_failed, summary) to standard error.",
        ),
    ] = False,
    json_file: Annotated[
        Path | None, typer.Option(help="Write the JSON lines to this file instead.")
    ] = None,
) -> None:
    from .batch import plan_jobs
    from .colorfix import DEFAULT_COLOR_FIX
    from .pipeline import UpscaleOptions

    if len(paths) < 2:
        raise typer.BadParameter(
            "give at least one INPUT and an OUTPUT", param_hint="INPUT... OUTPUT"
        )
    inputs, output = paths[:-1], paths[-1]
    try:
        reporter = Reporter(quiet=quiet, verbose=verbose, json_out=json_lines, json_file=json_file)
    except UsageError as e:
        raise _fail(None, e) from None
    try:
        opts = UpscaleOptions(
            scale=scale,
            width=width,
            height=height,
            tile=tile,
            tile_overlap=tile_overlap,
            chunk=chunk,
            chunk_overlap=chunk_overlap,
            batch=batch_frames,
            color_fix=color_fix or DEFAULT_COLOR_FIX,
            scene_split=not no_scene_split,
        )
        opts.validate()
        enc = _encode_options(
            codec,
            crf,
            preset,
            pix_fmt,
            bitrate,
            encoder_opt or [],
            format,
            no_audio,
            no_subs,
            audio_codec,
            overwrite,
            not no_deinterlace,
            strict,
        )
        _check_pipes(inputs, output, format)
        plan = plan_jobs(
            inputs,
            output,
            recursive=recursive,
            include=glob or [],
            exclude=exclude or [],
            suffix=suffix,
            ext=ext,
            overwrite=overwrite,
            skip_existing=skip_existing,
        )
    except AdcvsrError as e:
        raise _fail(reporter, e) from None
    if dry_run:
        raise typer.Exit(_dry_run(plan, opts, device, precision, weights, reporter))
    with reporter:
        code = _run_jobs(
            plan,
            opts,
            enc,
            reporter,
            weights=weights,
            cache_dir=cache_dir,
            offline=offline,
            device=device,
            precision=precision,
            compile=compile,
        )
    raise typer.Exit(code)


def _encode_options(
    codec,
    crf,
    preset,
    pix_fmt,
    bitrate,
    eopts,
    fmt,
    no_audio,
    no_subs,
    audio_codec,
    overwrite,
    deinterlace,
    strict,
):  # type: ignore[no-untyped-def]
    from .video import EncodeOptions

    if crf is not None and not 0 <= crf <= 63:
        raise UsageError(f"--crf {crf} is out of range (0..63)")
    return EncodeOptions(
        codec=codec,
        crf=crf,
        preset=preset,
        pix_fmt=pix_fmt,
        bitrate=bitrate,
        encoder_options=_parse_kv(eopts),
        format=fmt,
        no_audio=no_audio,
        no_subs=no_subs,
        audio_codec=audio_codec,
        overwrite=overwrite,
        deinterlace=deinterlace,
        strict=strict,
    )


STREAMABLE_FORMATS = ("matroska", "nut", "mpegts", "mp4")


def _check_pipes(inputs: list[str], output: str, fmt: str | None) -> None:
    if output == "-":
        if fmt is not None and fmt not in STREAMABLE_FORMATS:
            raise UsageError(
                f"--format {fmt} cannot be written to a pipe: use one of {', '.join(STREAMABLE_FORMATS)} (mp4 is written fragmented)"
            )
        if sys.stdout.isatty():
            raise UsageError(
                "refusing to write video to a terminal: redirect standard output (> out.mkv) or give an output file"
            )
    elif fmt is not None and fmt not in STREAMABLE_FORMATS:
        pass  # a container override for a file: the media layer validates it
    if "-" in inputs and sys.stdin.isatty():
        raise UsageError(
            "'-' reads video from standard input, which is a terminal: pipe a file in (cat in.mkv | adcvsr upscale - out.mkv)"
        )


def _dry_run(
    plan: Any, opts: Any, device: str, precision: str, weights: str | None, reporter: Reporter
) -> int:
    from .pipeline import dry_run_plan

    failures = 0
    for job in plan.jobs:
        try:
            p = dry_run_plan(job.src, job.dst, opts, device=device, precision=precision)
            p["weights"] = weights or "adcsr-x4"
            p["skip"] = job.skip_reason
        except AdcvsrError as e:
            failures += 1
            reporter.json("file_failed", file=job.src, error=str(e), exit_code=e.exit_code)
            reporter.error(str(e))
            continue
        reporter.json("plan", **p)
        if reporter._json_stream is not sys.stderr:
            lines = [
                f"{job.src} -> {job.dst}"
                + (f"  [skip: {job.skip_reason}]" if job.skip_reason else "")
            ]
            if "input_size" in p:
                iw, ih = p["input_size"]
                ow, oh = p["output_size"]
                streams = ", ".join(f"{s.get('type')}:{s.get('codec')}" for s in p["input_streams"])
                lines.append(
                    f"  input   {iw}x{ih}, {p['frames'] or '?'} frames, streams: {streams}"
                )
                lines.append(f"  output  {ow}x{oh} {p['output_container']}")
                lines.append(
                    f"  network {p['device']} {p['precision']}, chunk {p['chunk']} ({p['chunks'] or '?'} chunks), "
                    f"tile {p['tile'] or 'off'} overlap {p['tile_overlap']}, colour fix {p['color_fix']}"
                )
                lines.append(
                    f"  memory  about {p['estimated_peak_bytes'] / 2**30:.2f} GiB peak for activations"
                )
            typer.echo("\n".join(lines))
    if plan.ignored and reporter._json_stream is not sys.stderr:
        typer.echo(f"{len(plan.ignored)} non-media file(s) would be skipped")
    if failures:
        return EXIT_PARTIAL if plan.batch and failures < len(plan.jobs) else EXIT_ERROR
    return 0


def _run_jobs(plan: Any, opts: Any, enc: Any, reporter: Reporter, **load: Any) -> int:
    from .pipeline import load_model
    from .pipeline import upscale as run_one

    cancel = threading.Event()
    done = skipped = failed = 0
    frames = 0
    t0 = time.perf_counter()
    results: list[tuple[str, str, str]] = []
    to_run = [j for j in plan.jobs if not j.skip_reason]
    for j in plan.jobs:
        if j.skip_reason:
            skipped += 1
            results.append((j.src, "skipped", j.skip_reason))
            reporter.json("file_skipped", file=j.src, output=j.dst, reason=j.skip_reason)
    upscaler = None
    interrupted_code = 0
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        cancel.set()
        raise Terminated()

    signal.signal(signal.SIGTERM, on_term)
    try:
        reporter.start_batch(len(to_run))
        for job in to_run:
            reporter.start_file(job.src, job.dst)
            started = time.perf_counter()
            try:
                if upscaler is None:  # loaded once per run, on the first file that needs it
                    upscaler = load_model(on_event=reporter.on_event, **load)
                rep = run_one(
                    job.src, job.dst, upscaler, opts, enc, on_event=reporter.on_event, cancel=cancel
                )
            except AdcvsrError as e:
                if isinstance(e, BrokenPipeError):
                    raise
                failed += 1
                results.append((job.src, "failed", str(e)))
                reporter.json(
                    "file_failed", file=job.src, output=job.dst, error=str(e), exit_code=e.exit_code
                )
                reporter.error(str(e))
                if not plan.batch or (upscaler is None and _is_model_error(e)):
                    return e.exit_code
            else:
                done += 1
                frames += rep.frames_out
                secs = time.perf_counter() - started
                results.append((job.src, "done", f"{rep.frames_out} frames, {secs:.1f} s"))
                reporter.json(
                    "file_done",
                    file=job.src,
                    output=rep.output,
                    frames=rep.frames_out,
                    seconds=round(secs, 3),
                    fps=round(rep.frames_out / secs, 3) if secs > 0 else None,
                    plan=rep.plan,
                    plan_changes=rep.plan_changes,
                    scene_cuts=rep.scene_cuts,
                    warnings=rep.media.get("warnings", []),
                )
                reporter.log(
                    f"{job.src} -> {rep.output}: {rep.frames_out} frames in {secs:.1f} s",
                    level=0 if plan.batch else 1,
                )
            reporter.advance_batch()
    except KeyboardInterrupt:
        interrupted_code = EXIT_INTERRUPTED
    except Terminated:
        interrupted_code = EXIT_SIGTERM
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    finally:
        signal.signal(signal.SIGTERM, previous)
    seconds = time.perf_counter() - t0
    reporter.json(
        "summary",
        done=done,
        skipped=skipped,
        failed=failed,
        ignored=len(plan.ignored),
        frames=frames,
        seconds=round(seconds, 3),
        interrupted=bool(interrupted_code),
    )
    if interrupted_code:
        reporter.error(f"interrupted: {done} file(s) completed; unfinished output removed")
        return interrupted_code
    if plan.batch:
        _summary_table(reporter, results, done, skipped, failed, len(plan.ignored), frames, seconds)
    if failed:
        return EXIT_PARTIAL if plan.batch else EXIT_ERROR
    return 0


def _is_model_error(e: AdcvsrError) -> bool:
    from .errors import CheckpointError, WeightsError

    return isinstance(e, (WeightsError, CheckpointError)) or e.exit_code == EXIT_USAGE


def _summary_table(
    reporter: Reporter,
    results: list[tuple[str, str, str]],
    done: int,
    skipped: int,
    failed: int,
    ignored: int,
    frames: int,
    seconds: float,
) -> None:
    if reporter.quiet or reporter._json_stream is sys.stderr:
        return
    from rich.table import Table

    table = Table(title="adcvsr summary", show_lines=False)
    table.add_column("file")
    table.add_column("status")
    table.add_column("detail")
    for src, status, detail in results:
        table.add_row(src, status, detail, style={"failed": "red", "skipped": "dim"}.get(status))
    reporter.console.print(table)
    reporter.console.print(
        f"done {done}, skipped {skipped}, failed {failed}, not media {ignored}; {frames} frames in {seconds:.1f} s"
    )


def _silence_stdout() -> None:
    # The reader went away: point fd 1 at /dev/null so that the interpreter's final flush is quiet.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# ----------------------------------------------------------------------------- convert


@app.command(
    help="""Convert the released AdcSR files (weight/net_params_200.pkl and
weight/pretrained/halfDecoder.ckpt of Guaishou74851/AdcSR) into one native .safetensors file.

The pickles are read through an allow-list: a file that asks for code is refused and nothing of it runs.

Example:

  adcvsr convert --net-params net_params_200.pkl --half-decoder halfDecoder.ckpt -o adcsr-x4.safetensors
"""
)
def convert(
    net_params: Annotated[Path, typer.Option("--net-params", help="weight/net_params_200.pkl")],
    half_decoder: Annotated[
        Path, typer.Option("--half-decoder", help="weight/pretrained/halfDecoder.ckpt")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output .safetensors file.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    from .convert import convert_adcsr

    try:
        if out.exists() and out.is_dir():
            raise UsageError(f"{out}: is a folder; give the output file name")
        rep = convert_adcsr(net_params, half_decoder, out)
    except AdcvsrError as e:
        raise _fail(None, e) from None
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
    from .weights import list_models

    try:
        rows = list_models(cache_dir, verify=not no_verify)
    except AdcvsrError as e:
        raise _fail(None, e) from None
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
    for c in (
        "name",
        "architecture",
        "parameters",
        "temporal blocks",
        "cached",
        "verified",
        "size on disk",
        "notes",
    ):
        t.add_column(c)
    for r in rows:
        t.add_row(
            r.name,
            r.architecture,
            f"{r.parameters / 1e6:.1f} M",
            "yes" if r.temporal_blocks else "no",
            "yes" if r.cached else "no",
            "yes" if r.verified else "no",
            f"{r.size_bytes / 2**20:.0f} MiB" if r.size_bytes else "-",
            r.detail or ("" if r.available else "not released yet"),
        )
    Console().print(t)


@app.command(
    help="Fetch, verify and convert registry models into the cache (default: adcsr-x4).\n\nExample:\n\n  adcvsr download adcsr-x4"
)
def download(
    names: Annotated[list[str] | None, typer.Argument(help="Registry names.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Weights cache.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch and convert again even if cached.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True)] = 0,
) -> None:
    from .weights import download as fetch

    reporter = Reporter(quiet=quiet, verbose=max(verbose, 1))
    try:
        results = fetch(names or None, cache_dir=cache_dir, force=force, on_event=reporter.on_event)
    except AdcvsrError as e:
        raise _fail(reporter, e) from None
    bad = 0
    for r in results:
        if r.ok and r.weights is not None:
            typer.echo(f"{r.name}: ok  {r.weights.path}  sha256 {r.weights.sha256}", err=True)
        else:
            bad += 1
            reporter.error(f"{r.name}: {r.error}")
    if bad:
        raise typer.Exit(EXIT_ERROR if bad == len(results) else EXIT_PARTIAL)


@app.command(
    help="Print what a media file holds: streams, codecs, frame rate (and whether it varies), duration, rotation, colour tags.\n\nExample:\n\n  adcvsr info in.mp4 --json"
)
def info(
    file: Annotated[str, typer.Argument(help="A video or image file.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    count_frames: Annotated[
        bool, typer.Option("--count-frames", help="Count frames exactly (reads the whole file).")
    ] = False,
) -> None:
    from .video import probe

    try:
        mi = probe(file, count_frames=count_frames)
    except AdcvsrError as e:
        raise _fail(None, e) from None
    d = mi.to_dict()
    if as_json:
        typer.echo(json.dumps(d, indent=2, default=str))
        return
    rate = f"{d['avg_rate']} fps" if d.get("avg_rate") else "?"
    lines = [
        f"{file}: {d['format']}{' (image)' if d['is_image'] else ''}",
        f"  video   {d['codec']} {d['width']}x{d['height']} {d['pix_fmt']} ({d['bit_depth']}-bit){' alpha' if d['has_alpha'] else ''}",
        f"  frames  {d['frames'] if d['frames'] is not None else '?'}{'' if d['frames_exact'] else ' (estimate)'}, rate {rate}"
        f"{', variable' if d['vfr'] else ''}, duration {d['duration'] if d['duration'] is not None else '?'} s",
        f"  display rotation {d['rotation']}, sample aspect {d['sar'] or '1'}, interlaced {d['interlaced']}",
        f"  colour  primaries {d['color_primaries']}, transfer {d['color_trc']}, matrix {d['colorspace']}, range {d['color_range']}",
    ]
    for s in d["streams"]:
        lines.append(
            "  stream  " + ", ".join(f"{k}={v}" for k, v in s.items() if v not in (None, "", {}))
        )
    typer.echo("\n".join(lines))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("adcvsr: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
