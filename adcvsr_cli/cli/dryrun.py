"""``upscale --dry-run``: the plan of every job, printed or as JSON; no model, no output."""

from __future__ import annotations

import sys
from typing import Any

from ..errors import EXIT_ERROR, EXIT_PARTIAL, AdcvsrError
from .jobs import named, preflight
from .report import Reporter


def dry_run(
    plan: Any,
    opts: Any,
    enc: Any,
    device: str,
    precision: str,
    weights: str | None,
    reporter: Reporter,
) -> int:
    """Print (or emit as JSON) the plan of every job; load no model, write no file."""
    from ..pipeline import dry_run_plan

    # The plan is text for a person: on standard output, unless that is where the video goes.
    out = sys.stderr if any(j.dst == "-" for j in plan.jobs) else sys.stdout
    text = not reporter.json_on_stderr
    failures = would_run = skipped = 0
    for job in plan.jobs:
        try:
            problem = preflight(job, enc)
            p = dry_run_plan(job.src, job.dst, opts, device=device, precision=precision)
        except AdcvsrError as e:
            failures += 1
            msg = named(job, e)
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
