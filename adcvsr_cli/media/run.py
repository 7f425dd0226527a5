"""The worker threads of one :class:`~.transcoder.Session`: decode -> (the caller's stages) ->
encode (:class:`Run`), and the progress events it emits on the caller's thread.

The threads and bounded queues are those of :mod:`.threads`; what is decoded, and where the
frames are written, is the session's (:mod:`.transcoder`).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VideoError
from .common import INPUT_ERRORS, _err_text
from .encode import plane_spec
from .outputs import _wrap_write_error
from .threads import Crew, once, queue_len
from .types import Frame

if TYPE_CHECKING:
    from .transcoder import Session

_PROGRESS_INTERVAL_S = 0.1
_IN_QUEUE_BYTES = 256 << 20
_OUT_QUEUE_BYTES = 512 << 20


class Run:
    """The worker threads of one :class:`Session`: decode -> (the caller's stages) -> encode.

    Made by :meth:`Session.start`. The caller iterates :meth:`decoded` (the source's arrays,
    in order) and hands each finished frame, in the same order, to :meth:`put`; the timestamp
    and alpha plane of the source frame travel beside it, and a cut's context frames are
    dropped here. :meth:`end` waits for the encoder and returns the frames to be written.
    ``on_frame(array)``, when given, runs on the decode thread for each frame before it is
    queued (work that needs only the decoded frame, off the caller's thread).
    """

    def __init__(
        self,
        session: Session,
        cancel: threading.Event | None,
        on_frame: Callable[[np.ndarray], None] | None = None,
    ):
        self.session = session
        self.on_frame = on_frame
        self.crew = Crew(cancel, session.source.name)
        info, rep = session.source.info, session.report
        item = 2 if session.deep else 1
        self.size = (rep.out_height, rep.out_width, 3)
        self.dtype = np.uint16 if session.deep else np.uint8
        yuv = session.yuv_target()
        # the frames may also come as these planes (see Session.yuv_target)
        self.planes = None if yuv is None else plane_spec(yuv[0], rep.out_width, rep.out_height)
        # pts, alpha and keep travel beside the caller's stages, which see only the arrays.
        self.meta: collections.deque[tuple[int | None, np.ndarray | None, bool]] = (
            collections.deque()
        )
        self.frames_kept = 0  # decoded frames that are written (all but a cut's context)
        self.frames_out = 0
        cut = session.source.cut
        self.shift = cut.keep_from if cut is not None else 0
        self.progress = _Progress(session, self)
        self.feed = self.crew.feed(
            self._decode(),
            queue_len(info.width * info.height * 3 * item, _IN_QUEUE_BYTES, 2, 32),
            "adcvsr-decode",
            self._wrap_decode,
        )
        self.encoder = self.crew.drain(
            self._write,
            session.sink.finish,
            queue_len(rep.out_width * rep.out_height * 3 * item, _OUT_QUEUE_BYTES, 2, 16),
            "adcvsr-encode",
            self._wrap_encode,
        )

    # -- worker threads --------------------------------------------------------------------
    def _decode(self) -> Iterator[np.ndarray]:
        for frame, keep in self.session.cut_frames():
            self.frames_kept += keep
            self.meta.append((frame.pts, frame.alpha, keep))
            if self.on_frame is not None:
                self.on_frame(frame.array)
            yield frame.array

    def _write(self, arr: np.ndarray) -> None:
        pts, alpha, keep = self.meta.popleft()
        if keep:  # (a cut's context: processed, not written)
            self.session.sink.write(Frame(arr, None if pts is None else pts - self.shift, alpha))

    def _wrap_decode(self, e: BaseException) -> BaseException:
        # Only what a damaged input raises is blamed on the input; anything else (a bug, an
        # interrupt, MemoryError) goes to the caller unchanged, to be reported as what it is.
        if not isinstance(e, INPUT_ERRORS):
            return e
        err = VideoError(f"{self.session.source.name}: corrupt or unreadable input: {_err_text(e)}")
        err.__cause__ = e
        return err

    def _wrap_encode(self, e: BaseException) -> BaseException:
        # Writing fails with FFmpeg's or the OS's errors; anything else passes unchanged.
        if not isinstance(e, INPUT_ERRORS):
            return e
        err = _wrap_write_error(e, self.session.target.name)
        err.__cause__ = e
        return err

    # -- the caller's thread ---------------------------------------------------------------
    @property
    def frames_in(self) -> int:
        return self.feed.taken

    def decoded(self) -> Iterator[np.ndarray]:
        """The source's frames, (H, W, 3) uint8 (uint16 for a deep input), in order."""
        return iter(self.feed)

    def put(self, out: Any) -> None:
        """Check one finished frame, (H, W, 3) RGB or the encoder's (Y, U, V) planes, and hand
        it to the encoder."""
        self.crew.check()
        if isinstance(out, tuple) and self.planes is not None:
            got_planes = [(getattr(p, "shape", None), getattr(p, "dtype", None)) for p in out]
            if got_planes != self.planes:
                raise VideoError(
                    f"{self.session.report.input}: the frame processor returned planes "
                    f"{got_planes}, expected {self.planes}"
                )
        elif not isinstance(out, np.ndarray) or out.shape != self.size or out.dtype != self.dtype:
            got = f"{getattr(out, 'shape', None)} {getattr(out, 'dtype', type(out).__name__)}"
            raise VideoError(
                f"{self.session.report.input}: the frame processor returned {got}, expected "
                f"{self.size} {np.dtype(self.dtype).name}"
            )
        self.frames_out += 1
        if self.frames_out > self.frames_in:
            raise VideoError(
                f"{self.session.report.input}: the frame processor returned more frames than "
                "it was given"
            )
        self.encoder.put(out)
        self.progress.step(self.frames_out)

    def end(self) -> int:
        """After the last frame: check the counts, wait for the encoder to finish; returns the
        frames that were to be written."""
        self.crew.check()
        name = self.session.source.name
        if not self.feed.exhausted:
            raise VideoError(
                f"{name}: the frame processor stopped after {self.frames_out} frames before "
                "reading all input frames"
            )
        if self.frames_out != self.frames_in:
            raise VideoError(
                f"{name}: the frame processor returned {self.frames_out} frames for "
                f"{self.frames_in} input frames"
            )
        self.encoder.close()
        self.feed.join()
        self.crew.check()
        rep = self.session.report
        rep.seconds_decode, rep.seconds_encode = self.feed.busy, self.encoder.busy
        self.progress.done(self.frames_out, self.frames_in)
        return self.frames_kept

    def abort(self) -> None:
        self.session.source.stop()
        # Never close the output under a live encoder thread: one still inside a write when
        # the abort window ends closes it itself when that write returns.
        close = once(self.session.sink.abort)
        self.encoder.on_stop = close
        self.crew.abort()
        if not self.encoder.alive:
            close()

    def decoder_alive(self) -> bool:
        return self.crew.alive(self.feed.thread)


class _Progress:
    """Progress events (about ten a second) and the deinterlacing notice, on the caller's
    thread, with the warnings the workers left."""

    def __init__(self, session: Session, run: Run):
        self.session, self.run = session, run
        self.t0 = time.monotonic()
        self.last = 0.0
        self.announced = False

    def step(self, done: int) -> None:
        session, events = self.session, self.session.events
        if not self.announced and session.source.decoder.deinterlacing:
            self.announced = True
            session.report.deinterlaced = True
            events.warn(f"{session.source.info.path}: interlaced input, deinterlaced with bwdif")
        events.flush()
        now = time.monotonic()
        if now - self.last >= _PROGRESS_INTERVAL_S:
            self.last = now
            total = session.source.info.frames
            events.emit({"type": "progress", "frames_done": done, "frames_total": total})

    def done(self, done: int, total: int) -> None:
        self.session.report.seconds_process = time.monotonic() - self.t0
        self.session.events.flush()
        self.session.events.emit({"type": "progress", "frames_done": done, "frames_total": total})
