"""The options of ``adcvsr upscale`` as one object, in help groups.

Each field of :class:`UpscaleArgs` is one command-line parameter: its type, its ``typer.Option``
(flag names, help text, ``rich_help_panel`` = the group it is listed under in ``--help``) and its
default. :func:`takes` turns a function of one ``UpscaleArgs`` into the Typer command, so adding a
flag is adding a field here (and reading ``args.<field>`` where it is used).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UsageError

SIZE = "Size"
MODEL = "Weights and device"
NETWORK = "Network: tiles, chunks, colour"
ENCODE = "Video encoder"
STREAMS = "Streams and containers"
FILES = "Files and batches"
EXISTING = "Existing outputs"
MESSAGES = "Messages"
RANGE = "Range (part of a video)"


@dataclasses.dataclass
class UpscaleArgs:
    """Everything ``adcvsr upscale`` was given (field names = the flags, with _ for -)."""

    paths: Annotated[
        list[str],
        typer.Argument(metavar="INPUT... OUTPUT", help="Input files or folders, then the output."),
    ]
    # -- size
    scale: Annotated[
        float,
        typer.Option(
            "--scale",
            "-s",
            help="Output size / input size (any > 0; the network is x4, other sizes are resized from it).",
            rich_help_panel=SIZE,
        ),
    ] = 4.0
    width: Annotated[
        int | None,
        typer.Option(
            help="Output width (keeps the aspect ratio unless --height is given too).",
            rich_help_panel=SIZE,
        ),
    ] = None
    height: Annotated[int | None, typer.Option(help="Output height.", rich_help_panel=SIZE)] = None
    # -- weights and device
    weights: Annotated[
        str | None,
        typer.Option(
            help="Registry name, a native .safetensors path or hf://owner/repo@revision/path "
            "(default: $ADCVSR_WEIGHTS, else adcsr-x4).",
            envvar="ADCVSR_WEIGHTS",
            show_envvar=False,
            rich_help_panel=MODEL,
        ),
    ] = None
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="One folder for the weights, Hub downloads included (default: $ADCVSR_CACHE or ~/.cache/adcvsr, downloads in the Hugging Face cache).",
            rich_help_panel=MODEL,
        ),
    ] = None
    offline: Annotated[
        bool,
        typer.Option(
            help="Use cached weights only (also HF_HUB_OFFLINE=1).", rich_help_panel=MODEL
        ),
    ] = False
    device: Annotated[
        str, typer.Option(help="auto, cpu, cuda or cuda:N.", rich_help_panel=MODEL)
    ] = "auto"
    precision: Annotated[
        str,
        typer.Option(
            help="auto (fp16 on CUDA, rerun in bf16 if it overflows; fp32 on CPU), bf16, fp16 or fp32.",
            rich_help_panel=MODEL,
        ),
    ] = "auto"
    devices: Annotated[
        str | None,
        typer.Option(
            help="Run on several devices together, one worker and network copy each: "
            "cuda:0,cuda:1, all (every GPU) or cpu,cpu. The files of a batch and the segments "
            "of a long video are shared out between them.",
            rich_help_panel=MODEL,
        ),
    ] = None
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Run the files and segments on a Ray cluster (RAY_ADDRESS, or a local one): one "
            "actor per GPU, or per CPU with --device cpu. Needs pip install 'adcvsr[ray]'.",
            rich_help_panel=MODEL,
        ),
    ] = False
    compile: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the network (CUDA; slow start, faster long runs).",
            rich_help_panel=MODEL,
        ),
    ] = False
    fastpath: Annotated[
        str | None,
        typer.Option(
            "--fastpath",
            help="Network fast-path options joined by +: channels_last, compile, graphs (CUDA graphs), "
            "cudnn_benchmark, autocast, max_autotune. Each falls back to eager where it cannot run.",
            rich_help_panel=MODEL,
        ),
    ] = None
    # -- network: tiles, chunks, colour
    color_fix: Annotated[
        str | None,
        typer.Option(
            help="none, adain (per frame, the reference rule; default) or adain-temporal (statistics smoothed over time, reset at scene cuts).",
            rich_help_panel=NETWORK,
        ),
    ] = None
    tile: Annotated[
        str,
        typer.Option(
            help="Tile side in input pixels (multiple of 16), 0 for whole frames, or auto.",
            rich_help_panel=NETWORK,
        ),
    ] = "auto"
    tile_overlap: Annotated[
        int,
        typer.Option(help="Overlap of neighbouring tiles, input pixels.", rich_help_panel=NETWORK),
    ] = 32
    chunk: Annotated[
        int,
        typer.Option(
            help="Frames per temporal chunk (the model was trained on 25).", rich_help_panel=NETWORK
        ),
    ] = 25
    chunk_overlap: Annotated[
        int,
        typer.Option(
            help="Frames shared by consecutive chunks (cross-faded).", rich_help_panel=NETWORK
        ),
    ] = 4
    batch_frames: Annotated[
        int | None,
        typer.Option(
            "--batch",
            help="Frames per network call for image models (default: as many as fit, up to "
            "--chunk, on CUDA; one elsewhere).",
            rich_help_panel=NETWORK,
        ),
    ] = None
    no_scene_split: Annotated[
        bool,
        typer.Option(
            "--no-scene-split",
            help="Let chunks and colour statistics span detected scene cuts.",
            rich_help_panel=NETWORK,
        ),
    ] = False
    start: Annotated[
        str | None,
        typer.Option(
            help="Upscale from this time: seconds (90, 2.5) or a timestamp (00:01:30.5); the "
            "output starts at zero, audio, subtitles and chapters cut to the same range.",
            rich_help_panel=RANGE,
        ),
    ] = None
    end: Annotated[
        str | None,
        typer.Option(help="Up to this time (not included).", rich_help_panel=RANGE),
    ] = None
    duration: Annotated[
        str | None,
        typer.Option(
            help="This long from --start (seconds or a timestamp).", rich_help_panel=RANGE
        ),
    ] = None
    frames: Annotated[
        int | None,
        typer.Option(help="This many frames from --start.", rich_help_panel=RANGE),
    ] = None
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="Write an A/B video instead: split (left half bicubic, right half the network) "
            "or side (both side by side, twice as wide), labelled. Needs 'adcvsr[preview]'.",
            rich_help_panel=NETWORK,
        ),
    ] = None
    # -- video encoder
    codec: Annotated[
        str | None,
        typer.Option(
            help="Video encoder (default libx264; 10-bit input gives 10-bit output).",
            rich_help_panel=ENCODE,
        ),
    ] = None
    crf: Annotated[
        int | None, typer.Option(help="Constant rate factor (default 18).", rich_help_panel=ENCODE)
    ] = None
    preset: Annotated[
        str | None, typer.Option(help="Encoder preset (default medium).", rich_help_panel=ENCODE)
    ] = None
    pix_fmt: Annotated[
        str | None,
        typer.Option(
            help="Output pixel format (default follows the input).", rich_help_panel=ENCODE
        ),
    ] = None
    bitrate: Annotated[
        str | None, typer.Option(help="Target bitrate, e.g. 8M.", rich_help_panel=ENCODE)
    ] = None
    encoder_opt: Annotated[
        list[str] | None,
        typer.Option(
            "-e",
            "--encoder-option",
            metavar="KEY=VALUE",
            help="Extra encoder option key=value (repeatable).",
            rich_help_panel=ENCODE,
        ),
    ] = None
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Allow outputs over 16384 pixels on a side (beyond every codec level).",
            rich_help_panel=ENCODE,
        ),
    ] = False
    # -- streams and containers
    audio_codec: Annotated[
        str | None,
        typer.Option(
            help="Transcode audio to this codec (e.g. aac) instead of copying it.",
            rich_help_panel=STREAMS,
        ),
    ] = None
    no_audio: Annotated[
        bool, typer.Option("--no-audio", help="Drop audio streams.", rich_help_panel=STREAMS)
    ] = False
    no_subs: Annotated[
        bool, typer.Option("--no-subs", help="Drop subtitle streams.", rich_help_panel=STREAMS)
    ] = False
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Container for standard output: matroska (default), nut, mpegts or mp4 (fragmented).",
            rich_help_panel=STREAMS,
        ),
    ] = None
    no_deinterlace: Annotated[
        bool,
        typer.Option(
            "--no-deinterlace", help="Keep interlaced fields as they are.", rich_help_panel=STREAMS
        ),
    ] = False
    strict: Annotated[
        bool,
        typer.Option(
            help="Treat corrupt packets and inputs that end early as errors.",
            rich_help_panel=STREAMS,
        ),
    ] = False
    # -- files and batches
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            "-y",
            help="Replace existing outputs (only once the new one is complete).",
            rich_help_panel=EXISTING,
        ),
    ] = False
    segment: Annotated[
        int,
        typer.Option(
            help="Frames per segment of a long video: pieces kept in a work folder beside the "
            "output, so a rerun of the same command resumes after a crash (0: never cut).",
            rich_help_panel=FILES,
        ),
    ] = 3000
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Discard the unfinished run of an output (its work folder) and start over.",
            rich_help_panel=EXISTING,
        ),
    ] = False
    skip_existing: Annotated[
        bool | None,
        typer.Option(
            "--skip-existing/--no-skip-existing",
            help="Skip inputs whose output exists (default for folders).",
            rich_help_panel=EXISTING,
        ),
    ] = None
    recursive: Annotated[
        bool,
        typer.Option(
            "--recursive",
            "-r",
            help="Descend into sub-folders, mirroring the tree.",
            rich_help_panel=FILES,
        ),
    ] = False
    glob: Annotated[
        list[str] | None,
        typer.Option(
            "--glob",
            metavar="PATTERN",
            help="Only inputs matching this pattern (repeatable).",
            rich_help_panel=FILES,
        ),
    ] = None
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            metavar="PATTERN",
            help="Skip inputs matching this pattern (repeatable).",
            rich_help_panel=FILES,
        ),
    ] = None
    suffix: Annotated[
        str,
        typer.Option(help="Added to output names in folder mode, e.g. _x4.", rich_help_panel=FILES),
    ] = ""
    ext: Annotated[
        str | None,
        typer.Option(
            help="Output extension in folder mode, e.g. mkv (a video extension changes videos, "
            "an image one images).",
            rich_help_panel=FILES,
        ),
    ] = None
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan for each input; load no model, write nothing.",
            rich_help_panel=FILES,
        ),
    ] = False
    # -- messages
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress bars or notices.", rich_help_panel=MESSAGES
        ),
    ] = False
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="More detail (repeatable).",
            rich_help_panel=MESSAGES,
        ),
    ] = 0
    json_lines: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Write JSON lines (run_start, model, start, progress, file_done, file_skipped, "
            "file_failed, summary) to standard error instead of bars and messages.",
            rich_help_panel=MESSAGES,
        ),
    ] = False
    json_file: Annotated[
        Path | None,
        typer.Option(
            help="Append the JSON lines to this file instead (bars and messages stay on standard error).",
            rich_help_panel=MESSAGES,
        ),
    ] = None

    @property
    def inputs(self) -> list[str]:
        return self.paths[:-1]

    @property
    def output(self) -> str:
        return self.paths[-1]


def takes(cls: type) -> Callable[[Callable[[Any], None]], Callable[..., None]]:
    """Decorator: ``fn(args: cls)`` becomes a Typer command whose parameters are ``cls``'s fields."""
    hints = typing.get_type_hints(cls, include_extras=True)
    params = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=hints[f.name],
            default=inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default,
        )
        for f in dataclasses.fields(cls)
    ]

    def wrap(fn: Callable[[Any], None]) -> Callable[..., None]:
        def command(**values: Any) -> None:
            fn(cls(**values))

        command.__name__ = fn.__name__
        command.__qualname__ = fn.__qualname__
        command.__doc__ = fn.__doc__
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return wrap


def parse_kv(items: list[str]) -> dict[str, str]:
    """``-e key=value`` options as a dict."""
    out = {}
    for it in items:
        if "=" not in it:
            raise UsageError(f"-e {it!r}: encoder options are key=value")
        k, v = it.split("=", 1)
        out[k.strip()] = v
    return out


def upscale_options(args: UpscaleArgs) -> Any:
    """The library's options of the network side, validated."""
    from ..engine.colorfix import DEFAULT_COLOR_FIX
    from ..pipeline import UpscaleOptions

    opts = UpscaleOptions(
        scale=args.scale,
        width=args.width,
        height=args.height,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        chunk=args.chunk,
        chunk_overlap=args.chunk_overlap,
        batch=args.batch_frames,
        color_fix=args.color_fix or DEFAULT_COLOR_FIX,
        scene_split=not args.no_scene_split,
        compare=getattr(args, "compare", None),  # commands sharing these flags may lack it
        range=range_request(args),
    )
    opts.validate()
    return opts


def range_request(args: Any) -> Any:
    """``--start/--end/--duration/--frames`` as a RangeRequest, or None when none is given."""
    from ..ranges import RangeRequest, parse_time

    names = ("start", "end", "duration")
    values = {n: getattr(args, n, None) for n in names}
    frames = getattr(args, "frames", None)
    if frames is None and all(v is None for v in values.values()):
        return None
    times = {n: None if v is None else parse_time(v, f"--{n}") for n, v in values.items()}
    return RangeRequest(frames=frames, **times)


def encode_options(args: UpscaleArgs) -> Any:
    """The library's options of the media side."""
    from ..media import EncodeOptions

    if args.crf is not None and not 0 <= args.crf <= 63:
        raise UsageError(f"--crf {args.crf} is out of range (0..63)")
    return EncodeOptions(
        codec=args.codec,
        crf=args.crf,
        preset=args.preset,
        pix_fmt=args.pix_fmt,
        bitrate=args.bitrate,
        encoder_options=parse_kv(args.encoder_opt or []),
        format=args.format,
        no_audio=args.no_audio,
        no_subs=args.no_subs,
        audio_codec=args.audio_codec,
        overwrite=args.overwrite,
        deinterlace=not args.no_deinterlace,
        strict=args.strict,
        force=args.force,
    )
