"""The run's thread plumbing: an encoder thread still inside a write (or its finish) when an
abort gives up waiting for it closes its output itself when that returns, exactly once; an
abort that lands as the last item went aborts the output and never finishes it."""

from __future__ import annotations

import threading

import pytest

from adcvsr_cli.media import threads
from adcvsr_cli.media.threads import END, Crew, once


@pytest.mark.parametrize("stage", ["write", "finish"])
def test_a_drain_stopped_mid_write_or_finish_closes_its_output_when_that_returns(stage):
    crew = Crew(name="t")
    entered, release = threading.Event(), threading.Event()
    closed: list[str] = []

    def slow() -> None:
        entered.set()
        release.wait(30)  # longer than the abort window, until the test lets it go

    def write(item: object) -> None:
        if stage == "write":
            slow()

    def finish() -> None:
        if stage == "finish":
            slow()
        closed.append("finished")

    drain = crew.drain(write, finish, 4, "enc", lambda e: e)
    drain.put(1)
    if stage == "finish":
        drain.q.put(END)  # what close() puts after the last item
    assert entered.wait(10)
    close = once(lambda: closed.append("aborted"))
    drain.on_stop = close
    crew.abort()  # gives up after its short window: the write or finish is still running
    assert drain.alive and closed == []
    release.set()
    drain.thread.join(10)
    assert not drain.alive
    want = ["aborted"] if stage == "write" else ["finished", "aborted"]
    assert closed == want  # closed by the encoder thread itself
    close()  # the caller's own attempt after the thread ended does nothing more
    assert closed == want


def test_an_abort_as_the_drain_takes_its_end_aborts_and_never_finishes(monkeypatch):
    crew = Crew(name="t")
    done: list[str] = []
    real_get = threads.get

    def get(q, stop):
        item = real_get(q, stop)
        if item is END:
            crew.stop.set()  # the abort lands just after the last item was written
        return item

    monkeypatch.setattr(threads, "get", get)
    drain = crew.drain(
        lambda item: done.append("wrote"), lambda: done.append("finished"), 4, "enc", lambda e: e
    )
    drain.on_stop = once(lambda: done.append("aborted"))  # as the run's abort sets it
    drain.put(1)
    drain.q.put(END)  # what close() puts after the last item
    drain.thread.join(10)
    assert not drain.alive
    assert done == ["wrote", "aborted"]


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
