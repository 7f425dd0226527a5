"""The segment queue on a local Ray cluster (two CPU actors): equal to one process, retried."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_segmented import LOSSLESS, OPTS, assert_same, make_shots
from tiny import write_tiny_weights

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'adcvsr[ray]')")

from adcvsr_cli.cluster import RayPool  # noqa: E402
from adcvsr_cli.pipeline import load_model, upscale  # noqa: E402
from adcvsr_cli.segmented import upscale_long  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny-vsr.safetensors"
    return write_tiny_weights(path, temporal=True)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


class KillOnce(RayPool):
    """Kills the actor process in the middle of segment 1, once (a marker file says it did)."""

    def __init__(self, load, marker: Path):
        super().__init__(load)
        self.marker = str(marker)

    def run(self, items, work, on_done, on_event, cancel=None):
        marker = self.marker

        def dying(up, seg, post, stop):
            def post_or_die(e):
                if seg.index == 1 and not os.path.exists(marker):
                    open(marker, "w").close()
                    os._exit(1)  # the actor's process dies mid-segment
                post(e)

            return work(up, seg, post_or_die, stop)

        super().run(items, dying, on_done, on_event, cancel)


def test_two_actors_equal_one_process_and_a_killed_actor_is_retried(tmp_path, weights, cluster):
    src = make_shots(tmp_path / "in.mp4", [20, 14])
    load = {"weights": str(weights), "device": "cpu"}
    driver = load_model(**load)
    pool = KillOnce(load, tmp_path / "killed")
    assert len(pool.actors) == 2
    events: list[dict] = []
    try:
        rep = upscale_long(
            src,
            tmp_path / "ray.mkv",
            [driver],
            OPTS,
            LOSSLESS,
            segment=8,
            pool=pool,
            on_event=events.append,
        )
    finally:
        pool.close()
    upscale(src, tmp_path / "one.mkv", driver, OPTS, LOSSLESS)
    assert_same(tmp_path / "ray.mkv", tmp_path / "one.mkv", src)
    assert (tmp_path / "killed").exists()  # the actor did die in segment 1 ...
    segs = [e for e in events if e["type"] == "segment"]
    assert sorted(e["index"] for e in segs) == list(range(rep.media["segments"]["total"]))
    assert {e["worker"] for e in segs} <= {"ray actor 0", "ray actor 1"}
    done = [e["frames_done"] for e in events if e["type"] == "progress"]
    assert done[-1] == 34  # ... and progress streamed back from the actors


def test_a_batch_on_ray_equals_one_process(tmp_path, weights, cluster):
    load = {"weights": str(weights), "device": "cpu"}
    driver = load_model(**load)
    pool = RayPool(load)
    try:
        for name, lengths in (("a", [17]), ("b", [9, 12])):
            src = make_shots(tmp_path / f"{name}.mp4", lengths)
            upscale_long(
                src, tmp_path / f"{name}-ray.mkv", [driver], OPTS, LOSSLESS, segment=6, pool=pool
            )
            upscale(src, tmp_path / f"{name}-one.mkv", driver, OPTS, LOSSLESS)
            assert_same(tmp_path / f"{name}-ray.mkv", tmp_path / f"{name}-one.mkv", src)
    finally:
        pool.close()
