"""The README's commands, as written.

Split (a fresh virtual-environment install takes minutes on 2 cores, so it is done once, by CI):
``.ci/run`` makes a fresh virtual environment and runs the README's install line and test
command; the first test here checks that it holds exactly those lines. The other tests run the
README's first-run line and every "Everyday use" command as written, in a scratch folder that
holds the files they name, with ``ADCVSR_WEIGHTS`` pointing at a tiny random network (the real
weights are a download) and, for ``adcvsr download``, a local fake Hub serving files in the
released layout. ``adcvsr bench`` is run by ``tests/test_bench.py`` on tiny sizes: as written it
runs for minutes on a CPU.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import av
import pytest
from media import make_image, make_video
from tiny import cli_env, write_tiny_weights

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def bash_block(heading: str) -> list[str]:
    """The command lines of the first ```bash block under the README heading ``heading``."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("\n```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def command(line: str) -> str:
    """A README line without its trailing comment (two spaces, then #)."""
    return line.split("  #", 1)[0].strip()


def ci_commands() -> list[str]:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    weights = write_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.safetensors")
    return cli_env(tmp_path_factory.mktemp("cache"), ADCVSR_WEIGHTS=str(weights))


# The one warning an everyday line may print, as the README says: Matroska stores no times
# before zero, so AAC audio (its priming packet) moves both streams later, and the tool says so.
MUXER_SHIFT = re.compile(r"^warning: \S+: timestamps shifted by \+\d+ ms by the matroska muxer ")


def sh(line: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    """Run one README line with bash in ``cwd``; it must succeed quietly (but for the muxer's
    shift of a Matroska output, see MUXER_SHIFT). Returns stderr."""
    r = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {line}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    err = r.stderr.decode()
    assert r.returncode == 0, f"{line}\n{err}"
    lines = [ln for ln in err.splitlines() if not MUXER_SHIFT.match(ln)]
    assert "Traceback" not in err and "warning" not in "\n".join(lines).lower(), f"{line}\n{err}"
    return err


def top_level_atoms(path: Path) -> list[str]:
    data = path.read_bytes()
    atoms, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        atoms.append(kind.decode("latin-1"))
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        pos += size if size else len(data)
    return atoms


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


# ----------------------------------------------------------------------------- install and CI


def test_ci_runs_exactly_the_readme_install_and_test_lines() -> None:
    install = bash_block("Install and run")[0]
    (test,) = bash_block("Tests")
    assert install == "pip install '.[test]'"
    ci = ci_commands()
    # The README's two lines, as written, are the last two things CI runs, in a fresh venv.
    assert ci[-2:] == [install, test], ci
    assert "python3 -m venv .venv" in ci and ". .venv/bin/activate" in ci
    # The install line brings what the test command needs.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    test_extra = re.search(r"^test = \[(.*?)\]", pyproject, re.M | re.S)
    assert test_extra is not None and '"pytest' in test_extra.group(1)


# ----------------------------------------------------------------------------- first run


def test_the_sample_is_the_same_bytes_every_time_and_streams(tmp_path: Path) -> None:
    script = ROOT / "examples" / "make_sample.py"
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        r = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path / name, capture_output=True, timeout=120
        )
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout.decode().strip() == "out/sample.mp4"
    first, second = (tmp_path / n / "out" / "sample.mp4" for n in ("one", "two"))
    assert first.read_bytes() == second.read_bytes()
    atoms = top_level_atoms(first)
    assert atoms.index("moov") < atoms.index("mdat"), atoms  # the index first: it streams
    with av.open(str(first)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (160, 96)
    assert decoded_frames(first) == 47


def test_first_run_lines_leave_the_checkout_clean(tmp_path: Path, env: dict[str, str]) -> None:
    """The README's second line, run in a copy of the checkout's examples: it writes out/ and
    nothing else, and out/ is ignored by git; the sample streams through examples/pipe.sh."""
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "examples", checkout / "examples")
    before = {p.relative_to(checkout) for p in checkout.rglob("*")}
    (line,) = bash_block("Install and run")[1:]
    sh(line, checkout, env)
    after = {p.relative_to(checkout) for p in checkout.rglob("*")}
    assert sorted(map(str, after - before)) == ["out", "out/sample.mp4", "out/sample_x4.mp4"]
    assert decoded_frames(checkout / "out" / "sample_x4.mp4") == 47
    if (ROOT / ".git").exists():
        r = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "out/sample_x4.mp4"])
        assert r.returncode == 0, "out/ is not ignored by git"
    pipe = checkout / "examples" / "pipe.sh"
    sh(f"bash {pipe} out/sample.mp4 out/piped.mkv", checkout, dict(env, ADCVSR_DEVICE="cpu"))
    assert decoded_frames(checkout / "out" / "piped.mkv") == 47


# ----------------------------------------------------------------------------- everyday use


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A folder with the files the README's everyday commands name."""
    make_video(tmp_path / "in.mp4", frames=6, audio="aac")
    make_video(tmp_path / "in.mkv", frames=5, fmt="matroska", audio="aac", seed=1)
    (tmp_path / "clips" / "sub").mkdir(parents=True)
    make_video(tmp_path / "clips" / "a.mp4", frames=4, seed=2)
    make_video(tmp_path / "clips" / "sub" / "b.mkv", frames=3, fmt="matroska", seed=3)
    make_image(tmp_path / "photo.png")
    return tmp_path


def everyday() -> list[str]:
    """The README's everyday commands, without their comments."""
    return [command(line) for line in bash_block("Everyday use")]


def test_everyday_upscale_info_and_models_commands(scratch: Path, env: dict[str, str]) -> None:
    lines = everyday()
    ran = []
    for line in lines:
        if " upscale " in line or " info " in line or line.endswith("adcvsr models"):
            sh(line, scratch, env)
            ran.append(line)
    assert len(ran) == 7, ran
    assert decoded_frames(scratch / "out.mp4") == 6
    assert sorted(
        p.relative_to(scratch / "upscaled").as_posix() for p in (scratch / "upscaled").rglob("*.*")
    ) == [
        "a.mp4",
        "sub/b.mkv",
    ]
    assert decoded_frames(scratch / "out.mkv") == 5
    assert (scratch / "photo_x4.png").exists()


def test_everyday_download_and_convert_commands(
    scratch: Path, env: dict[str, str], released_files: tuple[Path, Path]
) -> None:
    from hubserver import FakeHub

    net, dec = released_files
    (download,) = [line for line in everyday() if line.startswith("adcvsr download ")]
    (convert,) = [line for line in everyday() if line.startswith("adcvsr convert ")]
    (scratch / "net_params_200.pkl").symlink_to(net)
    (scratch / "halfDecoder.ckpt").symlink_to(dec)
    sh(convert, scratch, env)
    assert (scratch / "adcsr.safetensors").stat().st_size > 0
    with FakeHub() as hub:
        hub.add_file("Guaishou74851/AdcSR", "weight/net_params_200.pkl", net.read_bytes())
        hub.add_file("Guaishou74851/AdcSR", "weight/pretrained/halfDecoder.ckpt", dec.read_bytes())
        online = {k: v for k, v in env.items() if k != "HF_HUB_OFFLINE"}
        online.update(
            HF_ENDPOINT=hub.url, HF_HOME=str(scratch / "hf"), HF_HUB_DISABLE_TELEMETRY="1"
        )
        sh(download, scratch, online)
