"""Use adcvsr from Python: load the network once, upscale several files, follow progress.

    python examples/api.py [--weights NAME_OR_PATH] [--device auto|cpu|cuda] IN... OUT_DIR

Each IN is written to OUT_DIR/<name>_x4.mkv. The library never prints: progress and notices
arrive as dicts through ``on_event``, failures as typed exceptions (``AdcvsrError`` and its
subclasses, each with the command line's ``exit_code``). Defaults come from the environment
variables ADCVSR_WEIGHTS (else adcsr-x4) and ADCVSR_DEVICE (else auto).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from adcvsr_cli import EncodeOptions, UpscaleOptions, load_model, upscale
from adcvsr_cli.errors import AdcvsrError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", type=Path, help="video or image files")
    ap.add_argument("out_dir", type=Path, help="output folder (created)")
    ap.add_argument("--weights", default=os.environ.get("ADCVSR_WEIGHTS", "adcsr-x4"))
    ap.add_argument("--device", default=os.environ.get("ADCVSR_DEVICE", "auto"))
    args = ap.parse_args(argv)

    # Once per process: resolving the weights may download and convert them on first use.
    upscaler = load_model(args.weights, device=args.device)
    print(f"model {upscaler.source} on {upscaler.device} ({upscaler.dtype_name()})")

    options = UpscaleOptions(scale=4, color_fix="adain")  # as the command line: x4, --color-fix adain
    encode = EncodeOptions(crf=20, preset="fast", overwrite=True)  # libx264, audio copied

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "start":
            print(
                f"  {event['width']}x{event['height']} -> {event['out_width']}x{event['out_height']}"
            )
        elif event["type"] == "progress":
            print(
                f"  {event['frames_done']}/{event['frames_total'] or '?'} frames", file=sys.stderr
            )
        elif event["type"] == "warning":
            print(f"  warning: {event['message']}", file=sys.stderr)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for src in args.inputs:
        dst = args.out_dir / f"{src.stem}_x4.mkv"
        print(f"{src} -> {dst}")
        try:
            report = upscale(src, dst, upscaler, options, encode, on_event=on_event)
        except AdcvsrError as e:  # bad input: report it and go on with the next file
            print(f"  failed: {e}", file=sys.stderr)
            failed += 1
            continue
        print(
            f"  {report.frames_out} frames in {report.seconds:.1f} s "
            f"({report.chunks} chunks, {report.plan}); streams copied: "
            f"{', '.join(report.media['streams_copied']) or 'none'}"
        )
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
