"""upscale --compare split|side: an A/B video of the bicubic upscale and the network's frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from media import make_video
from tiny import tiny_dims

from adcvsr_cli.errors import UsageError
from adcvsr_cli.frames import read_frames
from adcvsr_cli.media import read_image
from adcvsr_cli.model import AdcVSR, init_random_
from adcvsr_cli.pipeline import UpscaleOptions, Upscaler, upscale
from adcvsr_cli.reference import bicubic


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The input's frames, a plain run and both A/B runs, as lossless PNG frames."""
    d = tmp_path_factory.mktemp("ab")
    src = make_video(d / "in.mp4", size=(48, 32), frames=4)
    m = AdcVSR(tiny_dims()).eval()
    init_random_(m, seed=3)
    up = Upscaler(m, device=torch.device("cpu"), dtype=torch.float32, source="tiny-x4 (test)")
    out = {}
    for mode in (None, "split", "side"):
        folder = d / str(mode)
        folder.mkdir()
        upscale(src, folder / "%03d.png", up, UpscaleOptions(tile=0, compare=mode))
        out[mode] = [read_image(folder / f"{i + 1:03d}.png")[0] for i in range(4)]
    lr = [f.rgb for f in read_frames(src)]
    return lr, out


def _label_free(a: np.ndarray) -> np.ndarray:
    return a[20:]  # the labels sit in the top rows (h // 30 px text plus padding)


def test_side_by_side_is_bicubic_then_network(runs):
    lr, out = runs
    for i, ab in enumerate(out["side"]):
        net = out[None][i]
        assert ab.shape == (128, 384, 3) and net.shape == (128, 192, 3)
        np.testing.assert_array_equal(_label_free(ab[:, 192:]), _label_free(net))
        np.testing.assert_array_equal(
            _label_free(ab[:, :192]), _label_free(bicubic(lr[i], 192, 128))
        )
        # The labels are there: the top-left corners differ from the plain pictures.
        assert not np.array_equal(ab[:12, :40], bicubic(lr[i], 192, 128)[:12, :40])
        assert not np.array_equal(ab[:12, 192:232], net[:12, :40])


def test_split_is_half_bicubic_half_network_with_a_line(runs):
    lr, out = runs
    for i, ab in enumerate(out["split"]):
        net, bic = out[None][i], bicubic(lr[i], 192, 128)
        assert ab.shape == net.shape
        np.testing.assert_array_equal(_label_free(ab[:, :95]), _label_free(bic[:, :95]))
        np.testing.assert_array_equal(_label_free(ab[:, 97:]), _label_free(net[:, 97:]))
        assert (ab[:, 95:97] == 255).all()


def test_unknown_mode_is_a_usage_error():
    with pytest.raises(UsageError, match=r"--compare 'wipe' is not one of split, side"):
        UpscaleOptions(compare="wipe").validate()
