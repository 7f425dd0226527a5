"""The ``adcvsr`` command line: a thin Typer layer over the library.

Exit codes: 0 all done, 1 error, 2 usage error, 3 some files of a batch failed, 130 interrupted
(143 on SIGTERM), 141 when the reader of standard output went away.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PARTIAL, AdcvsrError, UsageError

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
        self._dl_task: Any = None
        self._last_dl_json = 0.0
        self.task: Any = None
        self.batch_task: Any = None
        self.file = ""
        self._t0 = time.perf_counter()
        self._done0 = 0
        self._last_json = 0.0
        self._last_done = -1
        self._index = self._files = 1

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
        self.stop_bars()
        if self._json_stream is not None and self._json_stream is not sys.stderr:
            self._json_stream.close()

    def stop_bars(self) -> None:
        """End the live display (before a summary is printed under it)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    @property
    def json_on_stderr(self) -> bool:
        return self._json_stream is sys.stderr

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
        self.console.print(message, style=style or None, markup=False, soft_wrap=True)

    def error(self, message: str, *, event: bool = True, exit_code: int | None = None) -> None:
        """An error line on stderr (or, with --json, an ``error`` JSON line). ``event=False``:
        no JSON line (the caller wrote a more specific one, such as ``file_failed``)."""
        if event:
            fields = {} if exit_code is None else {"exit_code": exit_code}
            self.json("error", message=message, **fields)
        if not self.json_on_stderr:
            self.console.print(
                f"adcvsr: error: {message}", style="red", markup=False, soft_wrap=True
            )

    def warn(self, message: str) -> None:
        self.json("warning", file=self.file, message=message)
        if not self.quiet and self._json_stream is not sys.stderr:
            self.console.print(f"warning: {message}", style="yellow", markup=False, soft_wrap=True)

    # -- batch ----------------------------------------------------------------------------------
    def start_batch(self, n: int) -> None:
        if self.progress is not None and n > 1:
            self.batch_task = self.progress.add_task("files", total=n, fps="")

    def advance_batch(self) -> None:
        if self.progress is not None and self.batch_task is not None:
            self.progress.advance(self.batch_task)

    def start_file(self, src: str, dst: str, index: int = 1, files: int = 1) -> None:
        """A new file begins (``index`` of ``files`` that will run)."""
        self.file = src
        self._index, self._files = index, files
        self._t0 = time.perf_counter()
        self._last_json = 0.0
        self._last_done = -1
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(
                Path(src).name if src != "-" else "stdin", total=None, fps=""
            )

    def _download(self, e: dict[str, Any]) -> None:
        """Weights downloads: a bar per file on a terminal; start/done lines otherwise."""
        stage, name = e.get("stage"), str(e.get("file", ""))
        if stage == "progress":
            if self.progress is not None and self._dl_task is not None:
                self.progress.update(
                    self._dl_task, completed=e.get("bytes", 0), total=e.get("total")
                )
            now = time.perf_counter()
            if now - self._last_dl_json >= 1.0:
                self._last_dl_json = now
                self.json("download", **{k: v for k, v in e.items() if k != "type"})
            return
        self.json("download", **{k: v for k, v in e.items() if k != "type"})
        if stage == "start":
            total = e.get("total")
            size = f" ({total / 2**20:.0f} MiB)" if total else ""
            self.log(f"downloading {name}{size} from the Hugging Face Hub", level=0)
            if self.progress is not None:
                self._dl_task = self.progress.add_task(
                    f"download {name.rsplit('/', 1)[-1]}", total=total, fps=""
                )
        elif stage == "done":
            if self.progress is not None and self._dl_task is not None:
                self.progress.remove_task(self._dl_task)
                self._dl_task = None
            self.log(f"downloaded {name}", level=1)

    def on_event(self, e: dict[str, Any]) -> None:
        """The ``on_event`` callback handed to the library."""
        kind = e.get("type")
        if kind == "start":
            self.json(
                "start",
                file=self.file,
                index=self._index,
                files=self._files,
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
            final = total is not None and done >= total
            if done != self._last_done and (now - self._last_json >= 0.5 or final):
                self._last_json, self._last_done = now, done
                self.json(
                    "progress",
                    file=self.file,
                    frames_done=done,
                    frames_total=total,
                    fps=round(fps, 3),
                    eta_seconds=round((total - done) / fps, 1) if total and fps > 0 else None,
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
        elif kind == "download":
            self._download(e)
        elif kind in ("verify", "cache", "convert"):
            stage = e.get("stage") or e.get("status") or ""
            if stage != "progress":  # hashing progress is frequent and short: JSON and bars only
                self.json(kind, **{k: v for k, v in e.items() if k != "type"})
                what = e.get("file") or e.get("model") or ""
                self.log(
                    f"weights: {kind} {stage} {what}".rstrip(),
                    level=0 if stage in ("mismatch", "corrupt") else 1,
                )
        elif kind == "notice":
            self.json("notice", **{k: v for k, v in e.items() if k != "type"})
            self.log(str(e.get("message")), level=0)
        elif kind == "hub-log":
            self.json("hub-log", **{k: v for k, v in e.items() if k != "type"})
            self.log(f"hub: {e.get('message')}", level=2)
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
        reporter.error(msg, exit_code=e.exit_code)
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
inputs) into a folder (created; names keep the input's, changed by --suffix and --ext;
non-media files are counted and skipped; finished outputs are skipped unless --overwrite);
'-' reads standard input (a streamable container: mkv, ts, nut, y4m, fragmented mp4) or
writes standard output (--format matroska, nut, mpegts or mp4, written fragmented). The
model is loaded once per run. A file that fails is reported and the batch goes on.

Progress bars go to standard error when it is a terminal (-q: none); --json writes one JSON
object per line to standard error (--json-file: to a file) with the events run_start, model,
start, progress, file_done, file_skipped, file_failed, warning, error and summary.

Examples:

\b
  adcvsr upscale in.mp4 out.mp4
  adcvsr upscale clips/ upscaled/ --recursive --suffix _x4 --ext mkv
  adcvsr upscale a.mp4 b.mov c.mkv upscaled/ --overwrite
  adcvsr upscale clips/ upscaled/ -r --glob '*.mp4' --exclude 'raw/*' --json-file log.jsonl
  cat in.mkv | adcvsr upscale - - --format matroska > out.mkv
  adcvsr upscale in.mp4 - --format mp4 --no-audio | other-program
  adcvsr upscale photo.png photo_x4.png --color-fix adain
  adcvsr upscale clips/ upscaled/ --dry-run

{EXIT_CODES_HELP}
"""


class _UpscaleCommand(TyperCommand):
    """Shows ``INPUT... OUTPUT`` on the usage line (Typer would write ``{INPUT... OUTPUT}...``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [self.options_metavar or "[OPTIONS]", "INPUT...", "OUTPUT"]


@app.command(help=UPSCALE_HELP, no_args_is_help=True, cls=_UpscaleCommand)
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
        str,
        typer.Option(
            help="auto (fp16 on CUDA, rerun in bf16 if it overflows; fp32 on CPU), bf16, fp16 or fp32."
        ),
    ] = "auto",
    color_fix: Annotated[
        str | None,
        typer.Option(
            help="none, adain (per frame, the reference rule; default) or adain-temporal (statistics smoothed over time, reset at scene cuts)."
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
    strict: Annotated[
        bool, typer.Option(help="Treat corrupt packets and inputs that end early as errors.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Allow outputs over 16384 pixels on a side (beyond every codec level)."
        ),
    ] = False,
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
        str | None,
        typer.Option(
            help="Output extension in folder mode, e.g. mkv (a video extension changes videos, "
            "an image one images)."
        ),
    ] = None,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile", help="torch.compile the network (CUDA; slow start, faster long runs)."
        ),
    ] = False,
    fastpath: Annotated[
        str | None,
        typer.Option(
            "--fastpath",
            help="Network fast-path options joined by +: channels_last, compile, graphs (CUDA graphs), "
            "cudnn_benchmark, autocast, max_autotune. Each falls back to eager where it cannot run.",
        ),
    ] = None,
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
            help="Write JSON lines (run_start, model, start, progress, file_done, file_skipped, "
            "file_failed, summary) to standard error instead of bars and messages.",
        ),
    ] = False,
    json_file: Annotated[
        Path | None,
        typer.Option(
            help="Append the JSON lines to this file instead (bars and messages stay on standard error)."
        ),
    ] = None,
) -> None:
    from .batch import plan_jobs
    from .engine.colorfix import DEFAULT_COLOR_FIX
    from .pipeline import UpscaleOptions, resolve_device, resolve_precision

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
        # Device and precision are checked before any input is read or model resolved.
        resolve_precision(precision, resolve_device(device))
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
            force,
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
        raise typer.Exit(_dry_run(plan, opts, enc, device, precision, weights, reporter))
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
            fastpath=fastpath,
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
    force=False,
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
        force=force,
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
    plan: Any,
    opts: Any,
    enc: Any,
    device: str,
    precision: str,
    weights: str | None,
    reporter: Reporter,
) -> int:
    """Print (or emit as JSON) the plan of every job; load no model, write no file."""
    from .pipeline import dry_run_plan

    # The plan is text for a person: on standard output, unless that is where the video goes.
    out = sys.stderr if any(j.dst == "-" for j in plan.jobs) else sys.stdout
    text = not reporter.json_on_stderr
    failures = would_run = skipped = 0
    for job in plan.jobs:
        try:
            problem = _preflight(job, enc)
            p = dry_run_plan(job.src, job.dst, opts, device=device, precision=precision)
        except AdcvsrError as e:
            failures += 1
            msg = _named(job, e)
            reporter.json(
                "file_failed", file=job.src, output=job.dst, error=msg, exit_code=e.exit_code
            )
            reporter.error(msg, event=False)
            continue
        if job.dst == "-":
            p["output_container"] = enc.format or "matroska"
        p["weights"] = weights or "adcsr-x4"
        p["skip"] = job.skip_reason
        p["problem"] = problem
        if job.skip_reason:
            skipped += 1
        elif problem is None:
            would_run += 1
        else:
            failures += 1
        reporter.json("plan", file=job.src, **p)
        if not text:
            continue
        lines = [
            f"{job.src} -> {job.dst}"
            + (f"  [skip: {job.skip_reason}]" if job.skip_reason else "")
            + (f"  [would fail: {problem}]" if problem else "")
        ]
        if "input_size" in p:
            iw, ih = p["input_size"]
            ow, oh = p["output_size"]
            streams = ", ".join(f"{s.get('type')}:{s.get('codec')}" for s in p["input_streams"])
            lines.append(f"  input   {iw}x{ih}, {p['frames'] or '?'} frames, streams: {streams}")
            lines.append(f"  output  {ow}x{oh} {p['output_container']}")
            lines.append(
                f"  network {p['device']} {p['precision']}, weights {p['weights']}, chunk "
                f"{p['chunk']} ({p['chunks'] or '?'} chunks), tile {p['tile'] or 'off'} overlap "
                f"{p['tile_overlap']}, colour fix {p['color_fix']}"
            )
            lines.append(
                f"  memory  about {p['estimated_peak_bytes'] / 2**30:.2f} GiB peak for activations"
            )
        else:
            lines.append(f"  output  {p['output_container']}")
            lines.append(f"  network {p['device']} {p['precision']}, weights {p['weights']}")
            if p.get("note"):
                lines.append(f"  note    {p['note']}")
        print("\n".join(lines), file=out, flush=True)
    if plan.ignored and text:
        print(f"{len(plan.ignored)} non-media file(s) would be skipped", file=out, flush=True)
    reporter.json(
        "summary",
        dry_run=True,
        would_run=would_run,
        skipped=skipped,
        failed=failures,
        ignored=len(plan.ignored),
    )
    if failures:
        return EXIT_PARTIAL if plan.batch else EXIT_ERROR
    return 0


def _named(job: Any, e: BaseException) -> str:
    """The error's message, naming the input when it names neither the input nor the output."""
    msg = str(e) or type(e).__name__
    names = ["<stdin>", "standard input"] if job.src == "-" else [job.src, os.path.abspath(job.src)]
    if job.dst != "-":
        names += [job.dst, os.path.abspath(job.dst)]
    if any(n in msg for n in names):
        return msg
    return f"{'<stdin>' if job.src == '-' else job.src}: {msg}"


def _preflight(job: Any, enc: Any) -> str | None:
    """Problems found before any model is loaded: a missing input (VideoError, exit 1) is
    raised; an existing output that may not be replaced is returned as a message."""
    from .errors import VideoError

    if job.src != "-" and not os.path.lexists(job.src):
        raise VideoError(f"{job.src}: no such file")
    if job.src != "-" and job.dst != "-" and os.path.exists(job.dst):
        with contextlib.suppress(OSError):
            if os.path.samefile(job.src, job.dst):
                raise UsageError(
                    f"{job.dst}: is the input file {job.src}; give another output name "
                    "(the input is never written over)"
                )
    if (
        job.dst != "-"
        and not job.skip_reason
        and not enc.overwrite
        and os.path.lexists(job.dst)
        and not os.path.isdir(job.dst)
        and _is_regular(job.dst)
    ):
        return f"{job.dst}: output exists (use --overwrite/-y to replace it, or --skip-existing)"
    return None


def _is_regular(path: str) -> bool:
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True  # a dangling link: the media layer refuses to write through it


class _Run:
    """Counts and rows of one ``upscale`` run, for the summary table and the JSON summary."""

    def __init__(self) -> None:
        self.done = self.skipped = self.failed = self.frames = 0
        self.rows: list[tuple[str, str, str]] = []
        self.t0 = time.perf_counter()
        self.code = 0  # the exit code of the first failed file (a single file's run exits with it)
        self.fatal = 0  # the model could not load: the run's exit code


def _run_jobs(plan: Any, opts: Any, enc: Any, reporter: Reporter, **load: Any) -> int:
    """Run every job with one model (loaded once, when the first job needs it)."""
    from .errors import Interrupted, VideoError
    from .pipeline import load_model
    from .pipeline import upscale as run_one
    from .video import OutputExists

    cancel = threading.Event()
    run = _Run()
    to_run = [j for j in plan.jobs if not j.skip_reason]
    reporter.json(
        "run_start",
        files=len(plan.jobs),
        to_run=len(to_run),
        skipped=len(plan.jobs) - len(to_run),
        ignored=len(plan.ignored),
    )
    if plan.batch and not plan.jobs:
        reporter.warn(
            "no video or image files found"
            + (f" ({len(plan.ignored)} other file(s) ignored)" if plan.ignored else "")
        )
    for j in plan.jobs:
        if j.skip_reason:
            run.skipped += 1
            run.rows.append((j.src, "skipped", j.skip_reason))
            reporter.json("file_skipped", file=j.src, output=j.dst, reason=j.skip_reason)

    def failed(job: Any, e: BaseException, code: int) -> None:
        msg = _named(job, e)
        run.failed += 1
        run.code = run.code or code
        run.rows.append((job.src, "failed", msg))
        reporter.json("file_failed", file=job.src, output=job.dst, error=msg, exit_code=code)
        reporter.error(msg, event=False)

    upscaler = None
    interrupted_code = 0
    broken_pipe = False
    current: Any = None
    prev_term = signal.getsignal(signal.SIGTERM)
    prev_int = signal.getsignal(signal.SIGINT)

    def on_term(signum: int, frame: Any) -> None:
        cancel.set()
        raise Terminated()

    def on_int(signum: int, frame: Any) -> None:
        # A second Ctrl-C while the first one is cleaning up: stop now (the signal watcher, when
        # it runs, handles second signals itself, with cleanup, and sets ``cancel`` first).
        if cancel.is_set() and not watch.active:
            os.write(2, b"adcvsr: interrupted again, exiting at once\n")
            os._exit(EXIT_INTERRUPTED)
        cancel.set()
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    watched: set[int] = set()
    if in_main:
        signal.signal(signal.SIGTERM, on_term)
        watched.add(signal.SIGTERM)
        if prev_int is signal.default_int_handler:  # not when SIGINT is ignored (started with &)
            signal.signal(signal.SIGINT, on_int)
            watched.add(signal.SIGINT)
    watch = _SignalWatch(watched, cancel)
    watch.start()
    try:
        _clean_stale_parts(to_run, reporter)
        reporter.start_batch(len(to_run))
        for index, job in enumerate(to_run, 1):
            current = job
            try:
                problem = _preflight(job, enc)
                if problem is not None:
                    raise OutputExists(problem)
                if upscaler is None and job.src != "-":
                    # Until the model is loaded, check that the input is media at all: a rerun
                    # left with only broken files loads no model.
                    from .video import probe

                    probe(job.src)
                if job.make_dirs:
                    try:
                        Path(job.dst).parent.mkdir(parents=True, exist_ok=True)
                    except OSError as e:
                        raise VideoError(
                            f"{job.dst}: cannot create the output folder ({e.strerror or e})"
                        ) from e
            except AdcvsrError as e:
                failed(job, e, e.exit_code)
                reporter.advance_batch()
                if not plan.batch:
                    break
                continue
            if upscaler is None:
                # Once per run, outside the first file's timing; a model that cannot load ends
                # the run (every file would fail the same way).
                t_load = time.perf_counter()
                try:
                    upscaler = load_model(on_event=reporter.on_event, **load)
                except AdcvsrError as e:
                    reporter.error(str(e), exit_code=e.exit_code)
                    run.fatal = e.exit_code
                    break
                reporter.json(
                    "model",
                    weights=upscaler.source,
                    device=str(upscaler.device),
                    precision=upscaler.dtype_name(),
                    temporal=upscaler.temporal,
                    seconds=round(time.perf_counter() - t_load, 3),
                )
                reporter.log(
                    f"model {upscaler.source} on {upscaler.device} ({upscaler.dtype_name()}) "
                    f"loaded in {time.perf_counter() - t_load:.1f} s",
                    level=1,
                )
            reporter.start_file(job.src, job.dst, index, len(to_run))
            started = time.perf_counter()
            try:
                rep = run_one(
                    job.src, job.dst, upscaler, opts, enc, on_event=reporter.on_event, cancel=cancel
                )
            except BrokenPipeError:
                raise
            except Interrupted:
                raise KeyboardInterrupt from None
            except AdcvsrError as e:
                failed(job, e, e.exit_code)
                if not plan.batch:
                    break
            except Exception as e:  # a bug, not bad input: report it, keep the batch going
                failed(job, RuntimeError(f"internal error: {type(e).__name__}: {e}"), EXIT_ERROR)
                if reporter.verbose:
                    import traceback

                    reporter.log(traceback.format_exc(), level=1)
                if not plan.batch:
                    break
            else:
                run.done += 1
                run.frames += rep.frames_out
                secs = time.perf_counter() - started
                run.rows.append((job.src, "done", f"{rep.frames_out} frames, {secs:.1f} s"))
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
            current = None
            reporter.advance_batch()
    except KeyboardInterrupt:
        interrupted_code = EXIT_INTERRUPTED
    except Terminated:
        interrupted_code = EXIT_SIGTERM
    except BrokenPipeError:
        broken_pipe = True
    finally:
        if in_main:
            watch.stop()
            signal.signal(signal.SIGTERM, prev_term)
            signal.signal(signal.SIGINT, prev_int)
    if interrupted_code and current is not None:
        run.rows.append((current.src, "interrupted", "unfinished output removed"))
    if interrupted_code:
        finished = [src for src, status, _ in run.rows if status == "done"]
        reporter.stop_bars()
        reporter.error(
            f"interrupted: {len(finished)} file(s) completed"
            + (f" ({', '.join(finished)})" if finished else "")
            + "; unfinished output removed",
            exit_code=interrupted_code,
        )
    seconds = time.perf_counter() - run.t0
    reporter.json(
        "summary",
        done=run.done,
        skipped=run.skipped,
        failed=run.failed,
        ignored=len(plan.ignored),
        frames=run.frames,
        seconds=round(seconds, 3),
        interrupted=bool(interrupted_code),
        exit_code=(EXIT_BROKEN_PIPE if broken_pipe else interrupted_code or _exit_code(plan, run)),
    )
    reporter.stop_bars()
    if broken_pipe:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    if plan.batch or interrupted_code:
        _summary_table(reporter, run, len(plan.ignored), seconds)
    if interrupted_code:
        return interrupted_code
    return _exit_code(plan, run)


def _clean_stale_parts(jobs: list[Any], reporter: Reporter) -> None:
    """Remove temporary outputs that earlier runs left behind when killed outright (kill -9, a
    power cut) in the folders this run writes to; files of live processes are left alone."""
    from .video import remove_stale_parts

    folders = {os.path.dirname(os.path.abspath(j.dst)) for j in jobs if j.dst != "-"}
    for folder in sorted(folders):
        for path in remove_stale_parts(folder):
            reporter.warn(f"removed {path}, an unfinished output of an earlier run that was killed")


class _SignalWatch:
    """SIGINT/SIGTERM that work even while the main thread is inside one long native call.

    Python runs its signal handlers between bytecodes only, and on a CPU one network layer can
    take minutes. So the signals are blocked in every thread this run starts, and a watcher thread
    takes them with ``sigtimedwait``: it sets ``cancel`` and raises the usual handler in the main
    thread (``interrupt_main``), which cleans up as soon as the native call returns. If that has
    not happened within ``grace`` seconds, or on a second signal, the watcher removes the
    unfinished temporary outputs itself and exits with 130 (SIGINT) or 143 (SIGTERM).
    """

    def __init__(self, signals: set[int], cancel: threading.Event, grace: float = 2.0) -> None:
        self.signals = set(signals)
        self.cancel = cancel
        self.grace = grace
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._old_mask: set[int] | None = None

    @property
    def active(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if not self.signals or not hasattr(signal, "sigtimedwait"):
            return
        self._old_mask = set(signal.pthread_sigmask(signal.SIG_BLOCK, self.signals))
        self._thread = threading.Thread(target=self._watch, name="adcvsr-signals", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=1.0)
        self._thread = None
        # Signals that arrived meanwhile are delivered to the normal handlers once unblocked.
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask or set())

    def _watch(self) -> None:
        import _thread

        deadline: float | None = None
        first = 0
        while not self._stop.is_set():
            info = signal.sigtimedwait(self.signals, 0.2)
            now = time.monotonic()
            if info is None:
                if deadline is not None and now >= deadline:
                    self._hard_exit(first)
                continue
            if deadline is not None:  # a second signal: stop now
                self._hard_exit(info.si_signo)
            first = info.si_signo
            self.cancel.set()
            deadline = now + self.grace
            _thread.interrupt_main(signal.Signals(first))

    def _hard_exit(self, signo: int) -> None:
        from .video import remove_live_temps

        removed = remove_live_temps()
        note = f"; removed {len(removed)} unfinished output(s)" if removed else ""
        os.write(2, f"adcvsr: interrupted{note}\n".encode())
        os._exit(EXIT_SIGTERM if signo == signal.SIGTERM else EXIT_INTERRUPTED)


def _exit_code(plan: Any, run: _Run) -> int:
    if run.fatal:
        return run.fatal
    if not run.failed:
        return 0
    return EXIT_PARTIAL if plan.batch else (run.code or EXIT_ERROR)


def _summary_table(reporter: Reporter, run: _Run, ignored: int, seconds: float) -> None:
    if reporter.quiet or reporter.json_on_stderr:
        return
    from rich.table import Table

    if not run.rows:
        reporter.console.print(f"nothing to do; not media {ignored}", soft_wrap=True)
        return
    table = Table(title="adcvsr summary", show_lines=False)
    table.add_column("file")
    table.add_column("status")
    table.add_column("detail")
    styles = {"failed": "red", "skipped": "dim", "interrupted": "yellow"}
    for src, status, detail in run.rows:
        table.add_row(src, status, detail, style=styles.get(status))
    reporter.console.print(table)
    reporter.console.print(
        f"done {run.done}, skipped {run.skipped}, failed {run.failed}, not media {ignored}; "
        f"{run.frames} frames in {seconds:.1f} s",
        soft_wrap=True,
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
    from .weights import convert_adcsr

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

    reporter = Reporter(quiet=quiet, verbose=verbose)
    try:
        with reporter:
            results = fetch(
                names or None, cache_dir=cache_dir, force=force, on_event=reporter.on_event
            )
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


@app.command(
    help="""Benchmark the network and the pipeline (protocols A: 25 frames 128x128 -> 512x512,
B: 854x480 -> 3416x1920 with automatic tiles, C: file to file) and write a JSON report.

On a CPU it runs small sizes (tiny dims) so that it finishes in about a minute; on a CUDA card the
paper's sizes. Options after -- go to the benchmark itself (see `adcvsr bench -- --help`).

Examples:

  adcvsr bench

  adcvsr bench -- --protocols A --variants eager,channels_last+compile --json bench.json
""",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def bench(ctx: typer.Context) -> None:
    from .bench import main as bench_main

    try:
        code = bench_main(list(ctx.args))
    except AdcvsrError as e:
        raise _fail(None, e) from None
    raise typer.Exit(code or 0)
