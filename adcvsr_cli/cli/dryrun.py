"""``upscale --dry-run``: the plan of every job, printed or as JSON; no model, no output.

The plan comes from the planner the run uses (``pipeline.dry_run_plan`` calls it), and the
output size is checked by the media layer's own check, so the dry run refuses what the run
refuses, with the same message.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..errors import EXIT_ERROR, EXIT_PARTIAL, EXIT_USAGE, AdcvsrError
from .jobs import named, preflight
from .report import Reporter, plural


def network_is_temporal(weights: str | None, cache_dir: Any) -> tuple[bool, str | None]:
    """Whether the network ``--weights`` names has temporal blocks (they change the plan), read
    without loading it: from the registry, or the file's header when it is local or cached.
    Also a note when that cannot be known. Raises the WeightsError the run would raise."""
    from ..weights import peek_dims

    dims = peek_dims(weights, cache_dir=cache_dir)
    if dims is None:
        return False, (
            f"{weights} is not cached: planned as a network without temporal blocks "
            "(one with them plans by --chunk)"
        )
    return dims.has_temporal, None


def plan_job(
    job: Any,
    opts: Any,
    enc: Any,
    device: str,
    precision: str,
    weights: str | None,
    temporal: bool,
    warn: Any,
) -> dict[str, Any]:
    """The plan of one job (raises the AdcvsrError the run would raise before it starts)."""
    from ..media.transcoder import check_output_size
    from ..pipeline import dry_run_plan

    problem = preflight(job, enc)
    p = dry_run_plan(job.src, job.dst, opts, device=device, precision=precision, temporal=temporal)
    if "output_size" in p:
        out_w, out_h = p["output_size"]
        check_output_size(job.src, out_w, out_h, enc.force, warn)
        p.update(encoder_plan(job, enc, out_w, out_h, warn))
    if job.dst == "-":
        p["output_container"] = enc.format or "matroska"
    p["weights"] = weights or "adcsr-x4"
    p["temporal"] = temporal
    p["skip"] = job.skip_reason
    p["problem"] = problem
    p["note"] = p.get("note") or getattr(job, "note", None)
    return p


def encoder_plan(job: Any, enc: Any, out_w: int, out_h: int, warn: Any) -> dict[str, Any]:
    """The container, encoder and pixel format of a video output, chosen (and refused, with
    the same message) by the media layer's own functions, as the run chooses them."""
    from ..media import plan_target, probe
    from ..media.codecs import choose_encoder

    src_path = os.path.abspath(job.src)
    # Overwrite: an existing output is the plan's "problem" (see preflight), not an error here.
    target = plan_target(job.dst, True, enc.format, src_path, job.src)
    if target.kind not in ("file", "pipe"):
        return {}  # an image or an image sequence: no video encoder
    codec, pix = choose_encoder(enc, target.fmt, probe(job.src), out_w, out_h, warn)
    return {"container": target.fmt, "codec": codec, "pix_fmt": pix}


def plan_lines(job: Any, p: dict[str, Any]) -> list[str]:
    """The plan as a person reads it."""
    head = f"{job.src} -> {job.dst}"
    head += f"  [skip: {job.skip_reason}]" if job.skip_reason else ""
    head += f"  [would fail: {p['problem']}]" if p["problem"] else ""
    lines = [head]
    blocks = "with temporal blocks" if p["temporal"] else "frame by frame"
    net = f"  network {p['device']} {p['precision']}, weights {p['weights']} ({blocks})"
    if "input_size" not in p:
        lines += [f"  output  {p['output_container']}", net]
        return lines + ([f"  note    {p['note']}"] if p.get("note") else [])
    (iw, ih), (ow, oh) = p["input_size"], p["output_size"]
    streams = ", ".join(f"{s.get('type')}:{s.get('codec')}" for s in p["input_streams"])
    if p.get("input_image"):
        frames = f"1 frame (image, {p['input_bit_depth']}-bit)"
    else:
        frames = plural(p["frames"], "frame") if p["frames"] else "frame count unknown"
    chunks = plural(p["chunks"], "chunk") if p["chunks"] else "chunks: as many as it takes"
    tiles = (
        f"tiles {p['tile']} px ({p['tiles']} per frame, overlap {p['tile_overlap']})"
        if p["tile"]
        else "whole frames (no tiles)"
    )
    lines += [
        f"  input   {iw}x{ih}, {frames}, streams: {streams}",
        f"  output  {ow}x{oh} {p['output_container']}"
        + (f", {p['codec']} {p['pix_fmt']}" if p.get("codec") else ""),
        f"{net}, colour fix {p['color_fix']}",
        f"  plan    {plural(min(p['chunk'], p['frames'] or p['chunk']), 'frame')} per network "
        f"call, {chunks}, {tiles}",
        f"  memory  about {p['estimated_peak_bytes'] / 2**30:.2f} GiB peak for activations",
    ]
    return lines + ([f"  note    {p['note']}"] if p.get("note") else [])


def dry_run(
    plan: Any,
    opts: Any,
    enc: Any,
    device: str,
    precision: str,
    weights: str | None,
    cache_dir: Any,
    reporter: Reporter,
) -> int:
    """Print (or emit as JSON) the plan of every job; load no model, write no file."""
    # The plan is text for a person: on standard output, unless that is where the video goes.
    out = sys.stderr if any(j.dst == "-" for j in plan.jobs) else sys.stdout
    temporal, note = False, None
    if any(not j.skip_reason for j in plan.jobs):
        try:
            temporal, note = network_is_temporal(weights, cache_dir)
        except AdcvsrError as e:
            reporter.error(str(e), exit_code=e.exit_code)
            return e.exit_code
    if note:
        reporter.log(note)
    failures = would_run = skipped = 0
    code = EXIT_ERROR  # a single file's: the exit code its run would end with
    for job in plan.jobs:
        try:
            p = plan_job(job, opts, enc, device, precision, weights, temporal, reporter.warn)
        except AdcvsrError as e:
            failures, code = failures + 1, e.exit_code
            msg = named(job, e)
            reporter.json(
                "file_failed", file=job.src, output=job.dst, error=msg, exit_code=e.exit_code
            )
            reporter.error(msg, event=False)
            continue
        if job.skip_reason:
            skipped += 1
        elif p["problem"] is None:
            would_run += 1
        else:
            failures, code = failures + 1, EXIT_USAGE  # an existing output (OutputExists)
        reporter.json("plan", file=job.src, **p)
        if not reporter.json_on_stderr:
            print("\n".join(plan_lines(job, p)), file=out, flush=True)
    if plan.ignored and not reporter.json_on_stderr:
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
        return EXIT_PARTIAL if plan.batch else code
    return 0
