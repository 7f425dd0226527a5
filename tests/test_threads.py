"""The run's thread plumbing: an encoder thread still inside a write when an abort gives up
waiting for it closes its output itself when the write returns, exactly once."""

from __future__ import annotations

import threading

from adcvsr_cli.media.threads import Crew, once


def test_a_drain_stopped_mid_write_closes_its_output_when_the_write_returns():
    crew = Crew(name="t")
    entered, release = threading.Event(), threading.Event()
    closed: list[str] = []

    def write(item: object) -> None:
        entered.set()
        release.wait(30)  # longer than the abort window, until the test lets it go

    drain = crew.drain(write, lambda: closed.append("finished"), 4, "enc", lambda e: e)
    drain.put(1)
    assert entered.wait(10)
    close = once(lambda: closed.append("aborted"))
    drain.on_stop = close
    crew.abort()  # gives up after its short window: the write is still running
    assert drain.alive and closed == []
    release.set()
    drain.thread.join(10)
    assert not drain.alive
    close()  # the caller's own attempt after the thread ended does nothing more
    assert closed == ["aborted"]


def test_a_drain_that_ends_normally_does_not_call_on_stop():
    crew = Crew(name="t")
    done: list[str] = []
    drain = crew.drain(lambda item: None, lambda: done.append("finished"), 4, "enc", lambda e: e)
    drain.on_stop = lambda: done.append("aborted")
    drain.put(1)
    drain.close()
    assert done == ["finished"]


def test_once_runs_its_function_a_single_time_from_two_threads():
    calls: list[int] = []
    f = once(lambda: calls.append(1))
    threads = [threading.Thread(target=f) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    f()
    assert calls == [1]
