"""The README's "Look before you wait" commands, as written, with a tiny network for the weights."""

from __future__ import annotations

from pathlib import Path

import av
from media import make_video
from PIL import Image
from test_readme import bash_block, command, env, sh  # noqa: F401  (env is a fixture)


def test_look_before_you_wait_commands(tmp_path: Path, env: dict[str, str]) -> None:  # noqa: F811
    make_video(tmp_path / "in.mp4", frames=6, audio="aac")
    lines = [command(line) for line in bash_block("Look before you wait")]
    assert [line.split()[1] for line in lines] == ["preview", "upscale", "upscale", "quality"]
    sh("adcvsr upscale in.mp4 out.mp4", tmp_path, env)  # what the meter measures
    for line in lines:
        sh(line, tmp_path, env)
    with Image.open(tmp_path / "preview.png") as im:
        assert im.format == "PNG" and "adcvsr.preview" in im.text
    with av.open(str(tmp_path / "ab.mp4")) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (512, 192)  # 2 x (64x48 x4)
        assert [s.type for s in c.streams] == ["video", "audio"]
    with av.open(str(tmp_path / "part.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3  # frames 2, 3 and 4 of in.mp4 (25 fps)
    with Image.open(tmp_path / "flicker.png") as im:
        assert im.format == "PNG"
