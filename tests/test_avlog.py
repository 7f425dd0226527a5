"""media.avlog: libav's log lines, written to the C library's ``stderr``, become the tool's
warnings; other lines pass through; the C ``stderr`` always comes back; a flood never hangs
and what it lost is named. Lines are written with the C library's own ``fputs``, as libav's
default log callback writes them."""

from __future__ import annotations

import ctypes
import threading

import pytest

from adcvsr_cli.media.avlog import libav_messages

_libc = ctypes.CDLL(None)
_libc.fputs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
_STDERR = ctypes.c_void_p.in_dll(_libc, "stderr")


def c_print(text: bytes) -> int:
    """``fputs(text, stderr)``: what libav does; < 0 when the write failed."""
    return _libc.fputs(text, _STDERR.value)


def test_libav_lines_are_warnings_and_others_pass_through(capfd):
    got: list[str] = []
    before = _STDERR.value
    with libav_messages(got.append):
        assert _STDERR.value != before
        c_print(b"[mov,mp4 @ 0x55d0c1f0] Found duplicated MOOV Atom. Skipped it\n")
        c_print(b"x265 [info]: HEVC encoder version 3.5\n")
    assert _STDERR.value == before
    assert got == ["libav (mov,mp4): Found duplicated MOOV Atom. Skipped it"]
    assert capfd.readouterr().err == "x265 [info]: HEVC encoder version 3.5\n"


def test_stderr_is_restored_after_an_exception():
    before = _STDERR.value
    with pytest.raises(KeyError), libav_messages(lambda m: None):
        raise KeyError("inside")
    assert _STDERR.value == before


def test_a_failing_warn_never_stops_the_reader(capfd):
    calls: list[str] = []

    def broken(message: str) -> None:
        calls.append(message)
        raise BrokenPipeError(32, "Broken pipe")

    with libav_messages(broken):
        c_print(b"[h264 @ 0x1] first\n")
        c_print(b"[hevc @ 0x2] second\n")
        c_print(b"plain line\n")
    err = capfd.readouterr().err
    assert calls == ["libav (h264): first", "libav (hevc): second"]
    # each line the warning could not carry still reaches standard error, in order
    assert err == "[h264 @ 0x1] first\n[hevc @ 0x2] second\nplain line\n", err


def test_a_flood_past_the_pipe_never_hangs_and_names_what_it_lost():
    """The reader is held inside its first warning while 4 MiB of lines are written: the
    writes fail (never block), and the end names the loss; lines of one kind are folded."""
    got: list[str] = []
    hold = threading.Event()

    def slow(message: str) -> None:
        if not got:
            hold.wait()
        got.append(message)

    line = b"[h264 @ 0x1] concealing %d errors in P frame " + b"x" * 40 + b"\n"
    with libav_messages(slow):
        failed = sum(c_print(line % i) < 0 for i in range(70_000))
        hold.set()
    assert failed > 0  # the pipe was full: the C library dropped those lines
    assert got[:3] == [
        m.decode().strip().replace("[h264 @ 0x1]", "libav (h264):")
        for m in (line % 0, line % 1, line % 2)
    ]
    folded = [m for m in got if "more line(s) like it" in m]
    assert len(folded) == 1 and folded[0].startswith("libav (h264): concealing 0 errors"), got
    lost = [m for m in got if "were lost" in m]
    assert len(lost) == 1 and "libav's log fell more than" in lost[0], got
    assert len(got) == 5, got


def test_libavs_repeat_summary_is_counted_not_shown(capfd):
    """libav folds identical lines into "Last message repeated N times" (a line with no
    context prefix): it is counted with the line before, named once at the end."""
    got: list[str] = []
    with libav_messages(got.append):
        c_print(b"[h264 @ 0x1] co located POCs unavailable\n")
        c_print(b"    Last message repeated 40 times\n")
    assert got == [
        "libav (h264): co located POCs unavailable",
        "libav (h264): co located POCs unavailable (and 40 more line(s) like it, not shown)",
    ]
    assert capfd.readouterr().err == ""
