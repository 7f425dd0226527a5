"""Job planning (``adcvsr_cli.batch``): INPUT... OUTPUT -> jobs. Pure path logic on empty
files; no media is decoded here (the CLI tests run real files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adcvsr_cli.batch import Job, output_name, plan_jobs, scan_folder
from adcvsr_cli.errors import UsageError


def touch(root: Path, *names: str) -> None:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def pairs(plan) -> list[tuple[str, str, str | None]]:
    return [(j.src, j.dst, j.skip_reason) for j in plan.jobs]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    touch(
        src,
        "a.mp4",
        "b.MKV",
        "notes.txt",
        "cover.png",
        "sub/c.mov",
        "sub/deep/d.ts",
        "sub/readme.md",
        ".hidden.mp4",
        ".a.adcvsr-123-abcd.part.mp4",
        "raw/e.mp4",
    )
    (src / "link.mp4").symlink_to(src / "a.mp4")
    return src


# ----------------------------------------------------------------------------- single inputs


def test_file_to_file(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4")
    plan = plan_jobs([str(tmp_path / "a.mp4")], str(tmp_path / "b.mkv"))
    assert not plan.batch
    assert pairs(plan) == [(str(tmp_path / "a.mp4"), str(tmp_path / "b.mkv"), None)]


def test_single_file_does_not_skip_existing_by_default(tmp_path: Path) -> None:
    # A single file to an existing output is refused by the run (exit 2), not silently skipped.
    touch(tmp_path, "a.mp4", "b.mkv")
    plan = plan_jobs([str(tmp_path / "a.mp4")], str(tmp_path / "b.mkv"))
    assert plan.jobs[0].skip_reason is None
    plan = plan_jobs([str(tmp_path / "a.mp4")], str(tmp_path / "b.mkv"), skip_existing=True)
    assert plan.jobs[0].skip_reason == "output exists"


def test_file_into_existing_folder_keeps_the_name(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4")
    (tmp_path / "out").mkdir()
    plan = plan_jobs([str(tmp_path / "a.mp4")], str(tmp_path / "out"), suffix="_x4")
    assert plan.jobs[0].dst == str(tmp_path / "out" / "a_x4.mp4")


def test_file_into_folder_named_with_a_trailing_slash(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4")
    plan = plan_jobs([str(tmp_path / "a.mp4")], str(tmp_path / "new") + os.sep)
    assert plan.jobs[0].dst == str(tmp_path / "new" / "a.mp4")
    assert plan.jobs[0].make_dirs  # the run creates it
    assert not plan.batch
    plan = plan_jobs([str(tmp_path / "a.mp4")], str(tmp_path / "new" / "b.mkv"))
    assert not plan.jobs[0].make_dirs  # a file name in a missing folder is an error, not a guess


def test_stdin_and_stdout() -> None:
    plan = plan_jobs(["-"], "-")
    assert pairs(plan) == [("-", "-", None)] and not plan.batch


def test_stdin_needs_a_file_name_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="output file name"):
        plan_jobs(["-"], str(tmp_path))


def test_stdin_cannot_be_mixed_with_files(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4")
    with pytest.raises(UsageError, match="standard input"):
        plan_jobs(["-", str(tmp_path / "a.mp4")], str(tmp_path / "out"))


def test_several_inputs_cannot_go_to_stdout(tmp_path: Path, tree: Path) -> None:
    touch(tmp_path, "a.mp4", "b.mp4")
    with pytest.raises(UsageError, match="output folder"):
        plan_jobs([str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")], "-")
    with pytest.raises(UsageError, match="output folder"):
        plan_jobs([str(tree)], "-")


def test_no_input() -> None:
    with pytest.raises(UsageError):
        plan_jobs([], "out")


# ----------------------------------------------------------------------------- folders


def test_folder_flat_skips_non_media_hidden_parts_and_links(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = plan_jobs([str(tree)], str(out))
    assert plan.batch
    assert pairs(plan) == [
        (str(tree / "a.mp4"), str(out / "a.mp4"), None),
        (str(tree / "b.MKV"), str(out / "b.MKV"), None),
        (str(tree / "cover.png"), str(out / "cover.png"), None),
    ]
    assert plan.ignored == [str(tree / "notes.txt")]


def test_folder_recursive_mirrors_the_tree(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = plan_jobs([str(tree)], str(out), recursive=True, suffix="_x4", ext="mkv")
    got = {
        Path(j.src).relative_to(tree).as_posix(): Path(j.dst).relative_to(out).as_posix()
        for j in plan.jobs
    }
    assert got == {
        "a.mp4": "a_x4.mkv",
        "b.MKV": "b_x4.mkv",
        "cover.png": "cover_x4.png",  # --ext mkv is a video extension: images keep theirs
        "sub/c.mov": "sub/c_x4.mkv",
        "sub/deep/d.ts": "sub/deep/d_x4.mkv",
        "raw/e.mp4": "raw/e_x4.mkv",
    }
    assert sorted(plan.ignored) == sorted([str(tree / "notes.txt"), str(tree / "sub/readme.md")])


def test_glob_and_exclude(tree: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    plan = plan_jobs(
        [str(tree)], out, recursive=True, include=["*.mp4", "*.mov"], exclude=["raw/*"]
    )
    assert sorted(Path(j.src).name for j in plan.jobs) == ["a.mp4", "c.mov"]
    plan = plan_jobs([str(tree)], out, recursive=True, exclude=["*.png", "d.ts"])
    assert sorted(Path(j.src).name for j in plan.jobs) == ["a.mp4", "b.MKV", "c.mov", "e.mp4"]


def test_skip_existing_is_the_default_for_folders(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    touch(out, "a.mp4")
    plan = plan_jobs([str(tree)], str(out))
    reasons = {Path(j.src).name: j.skip_reason for j in plan.jobs}
    assert reasons == {"a.mp4": "output exists", "b.MKV": None, "cover.png": None}
    plan = plan_jobs([str(tree)], str(out), overwrite=True)
    assert all(j.skip_reason is None for j in plan.jobs)
    plan = plan_jobs([str(tree)], str(out), skip_existing=False)
    assert all(j.skip_reason is None for j in plan.jobs)


def test_several_files_into_a_folder(tmp_path: Path) -> None:
    touch(tmp_path, "x/a.mp4", "y/b.mov", "y/n.txt")
    out = tmp_path / "out"
    plan = plan_jobs(
        [str(tmp_path / "x/a.mp4"), str(tmp_path / "y/b.mov"), str(tmp_path / "y/n.txt")],
        str(out),
        ext=".mkv",
    )
    assert [j.dst for j in plan.jobs] == [str(out / "a.mkv"), str(out / "b.mkv")]
    assert plan.ignored == [str(tmp_path / "y/n.txt")]


def test_missing_input_in_a_batch_becomes_a_job_that_fails_later(tmp_path: Path) -> None:
    touch(tmp_path, "a.mp4")
    plan = plan_jobs([str(tmp_path / "a.mp4"), str(tmp_path / "gone.mp4")], str(tmp_path / "o"))
    assert [Path(j.src).name for j in plan.jobs] == ["a.mp4", "gone.mp4"]


def test_two_inputs_onto_one_output_is_refused(tmp_path: Path) -> None:
    touch(tmp_path, "x/a.mp4", "y/a.mp4")
    with pytest.raises(UsageError, match="both be written to"):
        plan_jobs([str(tmp_path / "x/a.mp4"), str(tmp_path / "y/a.mp4")], str(tmp_path / "o"))
    touch(tmp_path, "z/a.mp4", "z/a.mkv")
    with pytest.raises(UsageError, match="--suffix or --ext"):
        plan_jobs([str(tmp_path / "z")], str(tmp_path / "o"), ext="mp4")


def test_batch_output_must_be_a_folder(tmp_path: Path, tree: Path) -> None:
    touch(tmp_path, "a.mp4", "b.mp4", "exists.mkv")
    two = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    with pytest.raises(UsageError, match="this is a file"):
        plan_jobs(two, str(tmp_path / "exists.mkv"))
    # A name that looks like a video file would become a folder called out.mp4: refused.
    with pytest.raises(UsageError, match="looks like a file name"):
        plan_jobs(two, str(tmp_path / "out.mp4"))
    with pytest.raises(UsageError, match="a folder needs an output folder"):
        plan_jobs([str(tree)], str(tmp_path / "up.mkv"))


def test_output_folder_inside_the_input_is_not_scanned(tree: Path) -> None:
    out = tree / "upscaled"
    touch(out, "a.mp4", "sub/c.mov")  # the outputs of an earlier run
    plan = plan_jobs([str(tree)], str(out), recursive=True)
    assert not any("upscaled" in j.src for j in plan.jobs)
    skipped = sorted(Path(j.src).name for j in plan.jobs if j.skip_reason)
    assert skipped == ["a.mp4", "c.mov"]


def test_beside_the_inputs_with_a_suffix_is_idempotent(tmp_path: Path) -> None:
    d = tmp_path / "clips"
    touch(d, "a.mp4")
    first = plan_jobs([str(d)], str(d), suffix="_x4")
    assert pairs(first) == [(str(d / "a.mp4"), str(d / "a_x4.mp4"), None)]
    touch(d, "a_x4.mp4")  # the first run's output
    second = plan_jobs([str(d)], str(d), suffix="_x4")
    # a_x4.mp4 is this plan's target, not a new input (no a_x4_x4.mp4).
    assert pairs(second) == [(str(d / "a.mp4"), str(d / "a_x4.mp4"), "output exists")]


def test_writing_over_the_inputs_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "clips"
    touch(d, "a.mp4")
    with pytest.raises(UsageError, match="over itself"):
        plan_jobs([str(d)], str(d), overwrite=True)


def test_scan_folder_reports_an_unreadable_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot list"):
        scan_folder(tmp_path / "nope", recursive=False, include=[], exclude=[])


@pytest.mark.parametrize(
    ("name", "suffix", "ext", "want"),
    [
        ("a.mp4", "", None, "a.mp4"),
        ("a.mp4", "_x4", None, "a_x4.mp4"),
        ("a.mp4", "", "mkv", "a.mkv"),
        ("a.mp4", "-up", ".mkv", "a-up.mkv"),
        ("p.jpg", "", "png", "p.png"),
        ("p.jpg", "", "mkv", "p.jpg"),
        ("a.mp4", "", "png", "a.mp4"),
        ("a.b.mov", "_x4", None, "a.b_x4.mov"),
    ],
)
def test_output_name(name: str, suffix: str, ext: str | None, want: str) -> None:
    assert output_name(Path(name), suffix=suffix, ext=ext) == want


def test_job_is_a_value() -> None:
    assert Job("a", "b") == Job("a", "b", None, make_dirs=False)


def test_batch_jobs_create_their_folders(tree: Path, tmp_path: Path) -> None:
    plan = plan_jobs([str(tree)], str(tmp_path / "out"), recursive=True)
    assert plan.jobs and all(j.make_dirs for j in plan.jobs)
