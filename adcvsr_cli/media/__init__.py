"""Media layer: probe a file, decode it to RGB arrays, and write it back at a new size.

Everything but the resolution of the main video track is kept: timestamps (VFR stays VFR),
colour tags, sample aspect ratio, rotation, bit depth (10-bit stays 10-bit), audio, subtitle,
data and attachment streams (copied packet for packet), tags and chapters.

Modules, in the order the data flows:

- :mod:`.inputs` opens an input (path, ``"-"``, file object) through a demuxer allow-list;
  :mod:`.probe` describes it (:func:`probe`, :class:`MediaInfo`) and tells an early end.
- :mod:`.decode` decodes one video stream per packet; :mod:`.source` wraps it as the decode
  source (:func:`open_source`, :class:`Source`): frames with pts, side packets set aside.
- :mod:`.codecs` chooses the encoder, pixel format and options; :mod:`.encode` is the
  container sink (encode, mux, verify); :mod:`.sides` carries the other streams across.
- :mod:`.images` reads and writes still images, and holds the image and sequence sinks.
- :mod:`.outputs` names outputs, makes temporary files and publishes atomically
  (:func:`plan_target`, :class:`Target`).
- :mod:`.threads` is the thread and queue plumbing; :mod:`.transcoder` joins it all:
  :func:`open_session` gives a :class:`Session` (target + source + sink), whose :class:`Run`
  (:mod:`.run`) decodes and encodes in worker threads around the caller's own loop
  (``adcvsr upscale``'s is :func:`adcvsr_cli.pipeline.upscale`); :func:`transcode` is that loop
  with a frame processor.

The layer never prints. It reports through an ``on_event`` callback and raises the typed
errors of :mod:`adcvsr_cli.errors` (plus :class:`BrokenOutputPipe` and :class:`OutputExists`).

Events (plain dicts, always delivered on the thread that called :func:`transcode`):

- ``{"type": "start", "input", "output", "frames" (estimate or None), "width", "height",
  "out_width", "out_height", "fps", "duration", "bit_depth", "dtype" ("uint8"/"uint16"),
  "rotation", "interlaced", "codec", "pix_fmt", "container", "streams_copied",
  "streams_dropped"}``
- ``{"type": "progress", "frames_done": n, "frames_total": estimate or None}``, at most about
  ten a second, and once more at the end with the exact total.
- ``{"type": "warning", "message": str}`` (also collected in ``TranscodeReport.warnings``).
- ``{"type": "done", "report": TranscodeReport.to_dict()}``.

A truncated input is processed as far as it decodes, with a warning "input ends early" (an
error with ``strict``). Output sizes over 8192 pixels on a side get a warning; over 16384
they are refused unless ``EncodeOptions.force`` is set.
"""

from __future__ import annotations

from .images import read_image, write_image
from .inputs import is_stream_input
from .outputs import (
    Target,
    is_image_path,
    is_sequence_pattern,
    plan_target,
    remove_live_temps,
    remove_stale_parts,
    resolve_output_path,
)
from .probe import probe
from .run import Run
from .source import Source, open_source
from .threads import Events
from .transcoder import Session, open_session, open_sink, transcode
from .types import (
    BrokenOutputPipe,
    EncodeOptions,
    Frame,
    FrameProcessor,
    MediaInfo,
    OutputExists,
    TranscodeReport,
)

__all__ = [
    "BrokenOutputPipe",
    "EncodeOptions",
    "Events",
    "Frame",
    "FrameProcessor",
    "MediaInfo",
    "OutputExists",
    "Run",
    "Session",
    "Source",
    "Target",
    "TranscodeReport",
    "is_image_path",
    "is_sequence_pattern",
    "is_stream_input",
    "open_session",
    "open_sink",
    "open_source",
    "plan_target",
    "probe",
    "read_image",
    "remove_live_temps",
    "remove_stale_parts",
    "resolve_output_path",
    "transcode",
    "write_image",
]
