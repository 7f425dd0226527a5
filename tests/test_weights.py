"""Registry, verified downloads, conversion cache and offline use, against a local fake Hub.

Nothing here reaches the real Hub: ``HF_ENDPOINT`` points at ``tests/hubserver.py`` on
127.0.0.1, ``HF_HOME`` and ``ADCVSR_CACHE`` at temporary folders. Budget: under 60 s.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from hubserver import COMMIT, FakeHub, corrupted
from tiny import tiny_dims

from adcvsr_cli import weights as W
from adcvsr_cli.errors import WeightsError
from adcvsr_cli.model import AdcVSR, adcsr_dims, adcvsr_dims, count_parameters, init_random_
from adcvsr_cli.weights import load_native, save_native, write_released_files

REPO_ROOT = Path(__file__).resolve().parents[1]
PKG_REGISTRY = REPO_ROOT / "adcvsr_cli" / "weights" / "weights.json"
NET, DEC = "weight/net_params_200.pkl", "weight/pretrained/halfDecoder.ckpt"
PICKLE_REPO, NATIVE_REPO = "test/tiny-adcsr", "test/tiny-native"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny network's state, its released-layout pickles and a native file (bytes)."""
    d = tmp_path_factory.mktemp("tiny")
    model = AdcVSR(tiny_dims())
    init_random_(model, seed=3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    write_released_files(state, d / "net.pkl", d / "dec.ckpt")
    save_native(state, tiny_dims(), d / "native.safetensors", source="test")
    return {
        "state": state,
        "params": count_parameters(model),
        "net": (d / "net.pkl").read_bytes(),
        "dec": (d / "dec.ckpt").read_bytes(),
        "native": (d / "native.safetensors").read_bytes(),
        "native_path": d / "native.safetensors",
    }


def _env(monkeypatch, tmp_path: Path, endpoint: str) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("ADCVSR_CACHE", str(tmp_path / "adcvsr"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(W.REGISTRY_ENV, raising=False)
    # huggingface_hub reads these at import. Telemetry off: otherwise the first request of the
    # process also asks constants.ENDPOINT (the real Hub) for its agent list.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)


def _offline(monkeypatch, on: bool = True) -> None:
    """HF_HUB_OFFLINE as huggingface_hub sees it (it reads the variable once, at import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", on)


@pytest.fixture
def no_backoff(monkeypatch) -> list[float]:
    """huggingface_hub retries failed requests with sleeps of 1 to 8 s: record them, do not wait."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def _serve(hub: FakeHub, tiny) -> None:
    hub.add_file(PICKLE_REPO, NET, tiny["net"])
    hub.add_file(PICKLE_REPO, DEC, tiny["dec"])
    hub.add_file(NATIVE_REPO, "model.safetensors", tiny["native"])


@pytest.fixture
def hub(monkeypatch, tmp_path, tiny):
    with FakeHub() as h:
        _serve(h, tiny)
        _env(monkeypatch, tmp_path, h.url)
        yield h


def _entry(name, *, repo, revision, fmt, files, dims=None, available=True, params=1):
    dims = dims or tiny_dims()
    return {
        "name": name,
        "description": f"test model {name}",
        "architecture": "adcvsr" if dims.has_temporal else "adcsr",
        "scale": dims.scale,
        "temporal_blocks": dims.has_temporal,
        "parameters": params,
        "license": "test-only",
        "available": available,
        "dims": json.loads(dims.to_json()),
        "source": {"repo_id": repo, "revision": revision, "format": fmt, "files": files},
    }


@pytest.fixture
def registry(tmp_path, tiny) -> Path:
    """A test registry describing tiny networks served by the fake hub."""
    import hashlib

    def sha(b: bytes) -> str:
        return hashlib.sha256(b).hexdigest()

    pickles = [
        {"role": "net_params", "path": NET, "size": len(tiny["net"]), "sha256": sha(tiny["net"])},
        {"role": "half_decoder", "path": DEC, "size": len(tiny["dec"]), "sha256": sha(tiny["dec"])},
    ]
    tofu = [dict(f, size=None, sha256=None) for f in pickles]
    native = [
        {
            "role": "weights",
            "path": "model.safetensors",
            "size": None,
            "sha256": sha(tiny["native"]),
        }
    ]
    p = tiny["params"]
    reg = {
        "schema_version": 1,
        "default": "tiny-adcsr",
        "models": [
            _entry(
                "tiny-adcsr",
                repo=PICKLE_REPO,
                revision=COMMIT,
                fmt="adcsr-pickle",
                files=pickles,
                params=p,
            ),
            _entry(
                "tiny-tofu",
                repo=PICKLE_REPO,
                revision="main",
                fmt="adcsr-pickle",
                files=tofu,
                params=p,
            ),
            _entry(
                "tiny-native",
                repo=NATIVE_REPO,
                revision=COMMIT,
                fmt="native",
                files=native,
                params=p,
            ),
            _entry(
                "tiny-vsr",
                repo=None,
                revision=None,
                fmt="native",
                files=[{"role": "weights", "path": "v.safetensors", "size": None, "sha256": None}],
                dims=tiny_dims(temporal=True),
                available=False,
            ),
        ],
    }
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(reg))
    return path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _blobs(tmp_path: Path, repo: str) -> list[Path]:
    d = tmp_path / "hf" / "hub" / f"models--{repo.replace('/', '--')}" / "blobs"
    return sorted(d.iterdir()) if d.is_dir() else []


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(Path(path).read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    Path(path).write_bytes(bytes(data))


def _assert_same_state(path: Path, state: dict[str, torch.Tensor]) -> None:
    model = load_native(path)
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k


# ----------------------------------------------------------------------------- the shipped registry


def test_shipped_registry_is_valid_and_describes_adcsr_and_future_adcvsr():
    reg = W.load_registry()
    assert reg.path.resolve() == PKG_REGISTRY.resolve()
    assert reg.schema_version == W.SCHEMA_VERSION
    assert reg.default == W.DEFAULT_MODEL == "adcsr-x4"
    assert W.available_models() == ["adcsr-x4"]

    e = reg.get("adcsr-x4")
    assert (e.architecture, e.scale, e.temporal_blocks, e.available) == ("adcsr", 4, False, True)
    assert e.dims == adcsr_dims()
    assert e.source.repo_id == "Guaishou74851/AdcSR"
    assert e.source.format == "adcsr-pickle"
    assert e.source.file("net_params").path == NET
    assert e.source.file("half_decoder").path == DEC
    # Unknown hashes and an unpinned revision are said so, never invented.
    assert all(f.sha256 is None and f.note for f in e.source.files)
    assert not e.source.pinned and "pinned" in e.source.note.lower()

    v = reg.get("adcvsr-x4")
    assert (v.architecture, v.temporal_blocks, v.available, v.source.format) == (
        "adcvsr",
        True,
        False,
        "native",
    )
    assert v.dims == adcvsr_dims()

    # The parameter counts are those of the networks the dims describe.
    for entry in (e, v):
        with torch.device("meta"):
            assert count_parameters(AdcVSR(entry.dims)) == entry.parameters, entry.name


def test_top_level_registry_is_the_package_file():
    top = REPO_ROOT / "weights.json"
    assert top.read_bytes() == PKG_REGISTRY.read_bytes()


def test_registry_env_var_is_honoured(monkeypatch, registry):
    monkeypatch.setenv(W.REGISTRY_ENV, str(registry))
    assert W.load_registry().default == "tiny-adcsr"
    assert W.available_models() == ["tiny-adcsr", "tiny-tofu", "tiny-native"]


def test_wheel_ships_the_registry(tmp_path):
    """A non-editable install finds weights.json: build the wheel, import from it elsewhere."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", src)
    shutil.copytree(
        REPO_ROOT / "adcvsr_cli", src / "adcvsr_cli", ignore=shutil.ignore_patterns("__pycache__")
    )
    if (REPO_ROOT / "README.md").exists():
        shutil.copy(REPO_ROOT / "README.md", src)
    out = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            ".",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        cwd=src,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = out.glob("*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        assert z.read("adcvsr_cli/weights/weights.json") == PKG_REGISTRY.read_bytes()
        z.extractall(site)
    code = "from adcvsr_cli import weights as W; r = W.load_registry(); print(r.path); print(r.default)"
    env = {k: v for k, v in os.environ.items() if k != W.REGISTRY_ENV} | {"PYTHONPATH": str(site)}
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    path, default = res.stdout.split()
    assert Path(path).resolve() == (site / "adcvsr_cli" / "weights" / "weights.json").resolve()
    assert default == "adcsr-x4"


# ----------------------------------------------------------------------------- malformed registries


def _mutate(data, how):
    data = copy.deepcopy(data)
    how(data)
    return data


def _set(path, value):
    def how(d):
        *parents, last = path
        for k in parents:
            d = d[k]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value

    return how


MALFORMED = [
    (
        "missing-repo",
        _set(["models", 0, "source", "repo_id"], KeyError),
        "models[0] (adcsr-x4).source.repo_id: missing",
    ),
    (
        "bad-sha",
        _set(["models", 0, "source", "files", 0, "sha256"], "abc"),
        "source.files[0].sha256: expected 64",
    ),
    (
        "scale",
        _set(["models", 0, "scale"], 2),
        "models[0] (adcsr-x4).scale: 2 disagrees with the dims",
    ),
    (
        "arch",
        _set(["models", 0, "architecture"], "esrgan"),
        "architecture: 'esrgan' is not one of adcsr, adcvsr",
    ),
    (
        "format",
        _set(["models", 0, "source", "format"], "onnx"),
        "source.format: 'onnx' is not one of",
    ),
    ("params", _set(["models", 0, "parameters"], "many"), "parameters: expected an integer"),
    (
        "dims",
        _set(["models", 0, "dims", "unet", "head_dim"], 7),
        "(adcsr-x4).dims: invalid network dims",
    ),
    ("typo", _set(["models", 0, "source", "files", 1, "sha"], "x"), "files[1].sha: unknown field"),
    (
        "version",
        _set(["schema_version"], 99),
        "schema_version: 99 is newer than this adcvsr understands (1)",
    ),
    ("default", _set(["default"], "nope"), "default: 'nope' names no model"),
    (
        "temporal",
        _set(["models", 0, "temporal_blocks"], True),
        "temporal_blocks: true disagrees with dims.temporal",
    ),
    (
        "path",
        _set(["models", 0, "source", "files", 0, "path"], "../x.pkl"),
        "files[0].path: must be a relative path",
    ),
    (
        "roles",
        _set(["models", 0, "source", "files", 1, "role"], "decoder"),
        "source.files: format adcsr-pickle needs",
    ),
    (
        "dup",
        lambda d: d["models"].append(copy.deepcopy(d["models"][0])),
        "models[2].name: duplicate model name",
    ),
]


@pytest.mark.parametrize("how,expect", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_registry_names_the_field(tmp_path, how, expect):
    good = json.loads(PKG_REGISTRY.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_mutate(good, how)))
    with pytest.raises(WeightsError) as err:
        W.load_registry(bad)
    assert str(bad) in str(err.value)
    assert expect in str(err.value)


def test_registry_that_is_not_json_or_missing(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1,\n "models": [}\n')
    with pytest.raises(WeightsError, match=r"bad.json: not valid JSON: .* at line 2 column"):
        W.load_registry(bad)
    with pytest.raises(WeightsError, match=r"missing.json: cannot read it"):
        W.load_registry(tmp_path / "missing.json")


# ----------------------------------------------------------------------------- names, paths, refs


def test_unknown_name_lists_the_valid_ones(registry):
    with pytest.raises(WeightsError) as err:
        W.resolve_weights("tiny-adcsrr", registry=registry)
    msg = str(err.value)
    assert "unknown model 'tiny-adcsrr'" in msg
    assert "Did you mean 'tiny-adcsr'?" in msg
    assert "Valid names: tiny-adcsr, tiny-tofu, tiny-native, tiny-vsr (not yet released)" in msg


def test_unreleased_entry_fails_clearly(registry):
    with pytest.raises(WeightsError, match="'tiny-vsr' is listed but not available yet"):
        W.resolve_weights("tiny-vsr", registry=registry)
    with pytest.raises(
        WeightsError, match="'adcvsr-x4' is listed but not available yet.*not been released"
    ):
        W.resolve_weights("adcvsr-x4")
    with pytest.raises(WeightsError, match="not available yet"):
        W.download(["tiny-vsr"], registry=registry)


def test_local_native_path(tmp_path, tiny):
    p = tiny["native_path"]
    for spec in (str(p), p):
        w = W.resolve_weights(spec, cache_dir=tmp_path / "c")
        assert (w.origin, w.name, w.dims, w.path) == ("local", None, tiny_dims(), p.resolve())
        assert w.sha256 == __import__("hashlib").sha256(tiny["native"]).hexdigest()
    assert not (tmp_path / "c").exists()  # a local file needs no cache


def test_local_path_errors(tmp_path):
    with pytest.raises(WeightsError, match=r"nope.safetensors: no such weights file"):
        W.resolve_weights(str(tmp_path / "nope.safetensors"))
    pkl = tmp_path / "net.pkl"
    torch.save({"a": torch.zeros(1)}, pkl)
    with pytest.raises(
        WeightsError, match=r"net.pkl: a pickled PyTorch checkpoint; adcvsr never unpickles"
    ):
        W.resolve_weights(str(pkl))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(WeightsError, match=r"junk.safetensors: .*not a readable safetensors file"):
        W.resolve_weights(str(junk))


@pytest.mark.parametrize(
    "ref,repo,path,rev,pinned",
    [
        ("hf://a/b/model.safetensors@" + COMMIT, "a/b", "model.safetensors", COMMIT, True),
        (
            "hf://a/b/sub/dir/m.safetensors@refs/pr/1",
            "a/b",
            "sub/dir/m.safetensors",
            "refs/pr/1",
            True,
        ),
        ("hf://a/b/m.safetensors", "a/b", "m.safetensors", "main", False),
    ],
)
def test_parse_hub_ref(ref, repo, path, rev, pinned):
    r = W.parse_hub_ref(ref)
    assert (r.repo_id, r.path, r.revision, r.pinned_by_user) == (repo, path, rev, pinned)


@pytest.mark.parametrize(
    "ref,repo,path,rev,pinned",
    [
        ("hf://a/b@" + COMMIT + "/model.safetensors", "a/b", "model.safetensors", COMMIT, True),
        ("hf://a/b@refs/pr/1/sub/m.safetensors", "a/b", "sub/m.safetensors", "refs/pr/1", True),
        ("hf://a/b@feat%2Fx/m.safetensors", "a/b", "m.safetensors", "feat/x", True),
        ("hf://a/b@v2/weights@2x/m.safetensors", "a/b", "weights@2x/m.safetensors", "v2", True),
    ],
)
def test_parse_hub_ref_in_the_hubs_form(ref, repo, path, rev, pinned):
    r = W.parse_hub_ref(ref)
    assert (r.repo_id, r.path, r.revision, r.pinned_by_user, r.legacy) == (
        repo,
        path,
        rev,
        pinned,
        False,
    )
    assert W.parse_hub_ref(str(r)) == r


def test_an_ambiguous_old_style_ref_says_which_form_to_write():
    with pytest.raises(WeightsError) as err:
        W.parse_hub_ref("hf://o/r/weights@2x/model.safetensors")
    msg = str(err.value)
    assert "is ambiguous" in msg
    assert "hf://o/r@main/weights@2x/model.safetensors" in msg
    assert "hf://o/r@2x%2Fmodel.safetensors/weights" in msg
    # Both spellings it suggests parse to what they say.
    assert (
        W.parse_hub_ref("hf://o/r@main/weights@2x/model.safetensors").path
        == "weights@2x/model.safetensors"
    )
    assert (
        W.parse_hub_ref("hf://o/r@2x%2Fmodel.safetensors/weights").revision
        == "2x/model.safetensors"
    )


@pytest.mark.parametrize(
    "ref",
    ["hf://a", "hf://a/b", "hf://a/b/", "hf://a/b/m.safetensors@", "hf://a/b/../x", "hf://a/b@/m.safetensors",
     "hf://a/b@main", "hf://datasets/a/b@main/m.safetensors"],
)  # fmt: skip
def test_bad_hub_refs(ref):
    with pytest.raises(WeightsError, match="hf://"):
        W.resolve_weights(ref)


def test_hub_ref_download(hub, tmp_path, tiny):
    events: list[dict] = []
    w = W.resolve_weights(f"hf://{NATIVE_REPO}/model.safetensors@{COMMIT}", on_event=events.append)
    assert (w.origin, w.dims, w.from_cache) == ("hub", tiny_dims(), False)
    assert w.path.read_bytes() == tiny["native"]
    _assert_same_state(w.path, tiny["state"])
    # Unpinned: a notice, and the branch is pinned to its commit, with the file's hash.
    w2 = W.resolve_weights(f"hf://{NATIVE_REPO}/model.safetensors", on_event=events.append)
    assert w2.sha256 == w.sha256
    assert any(e["type"] == "notice" and "not pinned" in e["message"] for e in events)
    (pin,) = (tmp_path / "adcvsr" / "pins").glob("*@main.json")
    assert json.loads(pin.read_text())["files"] == {"model.safetensors": w.sha256}
    # The Hub's form and the old one name the same file.
    hub.requests.clear()
    w3 = W.resolve_weights(f"hf://{NATIVE_REPO}@{COMMIT}/model.safetensors")
    assert (w3.path, w3.from_cache, hub.requests) == (w.path, True, [])
    with pytest.raises(
        WeightsError, match="only native .safetensors files are loaded from a Hub reference"
    ):
        W.resolve_weights(f"hf://{PICKLE_REPO}/{NET}@{COMMIT}")


# ----------------------------------------------------------------------------- download, convert, cache


@pytest.mark.parametrize("redirect", [False, True], ids=["direct", "cdn-redirect"])
def test_first_download_converts_then_cache_hit_makes_no_request(
    monkeypatch, tmp_path, tiny, registry, redirect
):
    with FakeHub(redirect=redirect) as hub:
        _serve(hub, tiny)
        _env(monkeypatch, tmp_path, hub.url)
        events: list[dict] = []
        w = W.resolve_weights("tiny-adcsr", registry=registry, on_event=events.append)
        assert w.path.parent == tmp_path / "adcvsr" / "native"
        assert (w.name, w.dims, w.origin, w.from_cache) == (
            "tiny-adcsr",
            tiny_dims(),
            "registry",
            False,
        )
        assert Path(str(w.path) + ".sha256").read_text().split()[0] == w.sha256
        _assert_same_state(w.path, tiny["state"])
        kinds = {(e["type"], e.get("stage")) for e in events}
        assert {
            ("download", "start"),
            ("download", "progress"),
            ("download", "done"),
            ("convert", "write"),
        } <= kinds
        done = [e for e in events if e["type"] == "download" and e["stage"] == "progress"]
        assert done[-1]["bytes"] == done[-1]["total"]
        assert hub.count("GET", "/cdn/" if redirect else "/resolve/") == 2
        # Pinned with hashes in the registry: the library's one HEAD per file, no call of ours.
        assert hub.count("HEAD") == 2 and hub.count(path_contains="/api/") == 0

        hub.requests.clear()
        again = W.resolve_weights("tiny-adcsr", registry=registry)
        assert (again.path, again.sha256, again.from_cache) == (w.path, w.sha256, True)
        assert hub.requests == []


def test_pinned_on_first_use_then_reruns_make_no_request(hub, registry, tmp_path, tiny):
    import hashlib

    w = W.resolve_weights("tiny-tofu", registry=registry)
    # One model_info call (commit + declared hashes), then HEAD + GET per file at the commit.
    assert [(r.method, r.path) for r in hub.requests if "/api/" in r.path] == [
        ("GET", f"/api/models/{PICKLE_REPO}/revision/main")
    ]
    assert hub.count("HEAD") == 2 and hub.count("GET", "/resolve/") == 2
    assert all(f"/resolve/{COMMIT}/" in r.path for r in hub.requests if "/resolve/" in r.path)
    (record,) = (tmp_path / "adcvsr" / "pins").glob("*.json")
    pin = json.loads(record.read_text())
    assert (pin["repo_id"], pin["revision"], pin["commit"]) == (PICKLE_REPO, "main", COMMIT)
    assert pin["files"] == {
        NET: hashlib.sha256(tiny["net"]).hexdigest(),
        DEC: hashlib.sha256(tiny["dec"]).hexdigest(),
    }
    hub.requests.clear()
    again = W.resolve_weights("tiny-tofu", registry=registry)
    assert (again.path, again.from_cache, hub.requests) == (w.path, True, [])
    assert COMMIT in again.source
    # With the converted file gone, the sources come from the Hub cache at the pinned commit.
    again.path.unlink()
    assert W.resolve_weights("tiny-tofu", registry=registry).sha256
    assert hub.requests == []
    rows = {r.name: r for r in W.list_models(registry=registry)}
    assert (rows["tiny-tofu"].pinned_by, rows["tiny-tofu"].commit) == ("first use", COMMIT)
    assert (rows["tiny-adcsr"].pinned_by, rows["tiny-adcsr"].commit) == ("registry", COMMIT)
    assert rows["tiny-tofu"].file_sha256 == pin["files"]  # what pinning a release needs


def test_a_pin_holds_until_force_pins_again(hub, registry, tmp_path, tiny):
    W.resolve_weights("tiny-tofu", registry=registry)
    new = "fedcba9876543210fedcba9876543210fedcba98"
    hub.commits[PICKLE_REPO] = new  # main moved upstream
    hub.requests.clear()
    assert COMMIT in W.resolve_weights("tiny-tofu", registry=registry).source
    assert hub.requests == []
    events: list[dict] = []
    (r,) = W.download(["tiny-tofu"], registry=registry, force=True, on_event=events.append)
    assert r.ok and new in r.weights.source
    assert any(e["type"] == "notice" and f"(it was {COMMIT})" in e["message"] for e in events)
    (record,) = (tmp_path / "adcvsr" / "pins").glob("*.json")
    assert json.loads(record.read_text())["commit"] == new


def test_a_pin_that_cannot_be_written_is_a_warning(hub, registry, tmp_path, monkeypatch):
    """A full (or read-only) cache: the run goes on verified, and says once what is lost."""
    import errno

    import adcvsr_cli.weights.native as native

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(native, "atomic_write", full)
    events: list[dict] = []
    w = W.resolve_weights(f"hf://{NATIVE_REPO}/model.safetensors", on_event=events.append)
    assert w.sha256 and not (tmp_path / "adcvsr" / "pins").exists()
    (msg,) = [e["message"] for e in events if e["type"] == "warning"]
    assert f"cannot record the pin of {NATIVE_REPO}@main in {tmp_path / 'adcvsr' / 'pins'}" in msg
    assert "No space left on device" in msg and "cannot tell whether main moved" in msg
    assert "--cache-dir DIR" in msg


def test_offline_hit_and_network_down_with_a_cache(hub, registry, monkeypatch):
    w = W.resolve_weights("tiny-adcsr", registry=registry)
    w_native = W.resolve_weights("tiny-native", registry=registry)
    hub.requests.clear()
    _offline(monkeypatch)
    assert W.resolve_weights("tiny-adcsr", registry=registry).path == w.path
    assert W.resolve_weights("tiny-native", registry=registry).path == w_native.path
    _offline(monkeypatch, False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert W.resolve_weights("tiny-adcsr", registry=registry).sha256 == w.sha256
    assert hub.requests == []


def test_offline_miss_says_what_is_missing_and_the_ways_out(hub, registry):
    with pytest.raises(WeightsError) as err:
        W.resolve_weights("tiny-adcsr", registry=registry, offline=True)
    msg = str(err.value)
    assert "model 'tiny-adcsr' is not in the cache" in msg and "offline mode is on" in msg
    assert f"missing {NET} and {DEC} from {PICKLE_REPO}@{COMMIT}" in msg
    assert "`adcvsr download tiny-adcsr` on a connected machine" in msg
    assert "--weights PATH" in msg
    with pytest.raises(
        WeightsError, match=r"model.safetensors from test/tiny-native@.* offline mode is on"
    ):
        W.resolve_weights("tiny-native", registry=registry, offline=True)
    assert hub.requests == []


def test_wrong_bytes_are_fetched_once_more_then_refused(hub, registry, tmp_path, tiny):
    import hashlib

    hub.file(PICKLE_REPO, NET).plan = ["corrupt", "corrupt"]
    events: list[dict] = []
    with pytest.raises(WeightsError) as err:
        W.resolve_weights("tiny-adcsr", registry=registry, on_event=events.append)
    msg = str(err.value)
    good, bad = (
        hashlib.sha256(tiny["net"]).hexdigest(),
        hashlib.sha256(corrupted(tiny["net"])).hexdigest(),
    )
    assert f"{NET} from {PICKLE_REPO}@{COMMIT} failed verification twice" in msg
    assert f"expected sha256 {good} (from the registry), got {bad}" in msg
    assert hub.count("GET", NET) == 2
    assert [e["attempt"] for e in events if e.get("stage") == "mismatch"] == [1, 2]
    # Nothing bad is left behind to be loaded later.
    assert hashlib.sha256(tiny["net"]).hexdigest() not in [
        p.name for p in _blobs(tmp_path, PICKLE_REPO)
    ]
    assert all(
        hashlib.sha256(p.read_bytes()).hexdigest() != bad for p in _blobs(tmp_path, PICKLE_REPO)
    )
    assert not list((tmp_path / "adcvsr").rglob("*.safetensors"))


def test_wrong_bytes_once_then_good(hub, registry, tiny):
    hub.file(PICKLE_REPO, NET).plan = ["corrupt"]
    w = W.resolve_weights("tiny-adcsr", registry=registry)
    assert hub.count("GET", NET) == 2
    _assert_same_state(w.path, tiny["state"])


def test_without_registry_hash_the_hub_lfs_sha256_still_catches_bad_bytes(hub, registry):
    hub.file(PICKLE_REPO, NET).plan = ["corrupt", "corrupt"]
    with pytest.raises(
        WeightsError, match=r"failed verification twice: .*\(from the Hub's LFS metadata\)"
    ):
        W.resolve_weights("tiny-tofu", registry=registry)


def test_corrupted_cached_native_file_is_rebuilt_without_network(hub, registry, tiny):
    w = W.resolve_weights("tiny-adcsr", registry=registry)
    _flip_byte(w.path)
    hub.requests.clear()
    events: list[dict] = []
    again = W.resolve_weights("tiny-adcsr", registry=registry, on_event=events.append)
    assert any(e["type"] == "cache" and e["status"] == "corrupt" for e in events)
    assert any(e["type"] == "convert" for e in events)
    assert (again.path, again.from_cache, again.sources) == (w.path, False, w.sources)
    # (safetensors writes metadata in random order, so a rebuild is equal in tensors, not bytes)
    assert Path(str(again.path) + ".sha256").read_text().split()[0] == again.sha256
    assert hub.requests == []  # rebuilt from the verified sources in the Hub cache
    _assert_same_state(again.path, tiny["state"])


def test_corrupted_hub_blob_is_fetched_again(hub, registry, tmp_path, tiny):
    w = W.resolve_weights("tiny-native", registry=registry)
    (blob,) = _blobs(tmp_path, NATIVE_REPO)
    _flip_byte(
        blob, offset=len(tiny["native"]) - 5
    )  # in the tensor data: safetensors itself would not notice
    hub.requests.clear()
    again = W.resolve_weights("tiny-native", registry=registry)
    assert again.sha256 == w.sha256 and again.path.read_bytes() == tiny["native"]
    assert hub.count("GET") == 1


def test_corrupted_cached_blob_offline_is_an_error(hub, registry, tmp_path):
    W.resolve_weights("tiny-native", registry=registry)
    (blob,) = _blobs(tmp_path, NATIVE_REPO)
    _flip_byte(blob)
    with pytest.raises(
        WeightsError, match=r"the cached model.safetensors .* is corrupt .* offline mode is on"
    ):
        W.resolve_weights("tiny-native", registry=registry, offline=True)


# ----------------------------------------------------------------------------- network faults


def test_connection_refused_is_retried_by_the_library_then_fails_clearly(
    hub, registry, monkeypatch, no_backoff
):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(WeightsError) as err:
        W.resolve_weights("tiny-adcsr", registry=registry)
    msg = str(err.value)
    assert f"cannot reach the Hugging Face Hub at {endpoint} to fetch {NET}" in msg
    assert (
        "Connection refused" in msg
        and "adcvsr download tiny-adcsr" in msg
        and "--weights PATH" in msg
    )
    assert len(no_backoff) == 5  # huggingface_hub's own retries, not a loop of ours


def test_a_hub_that_never_answers_fails_within_the_librarys_timeout(hub, registry, monkeypatch):
    """A Hub that accepts the connection and never answers: the first request of a model on a
    branch (as the shipped adcsr-x4 is) gives up after HF_HUB_ETAG_TIMEOUT, with no retry loop."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 1)  # what HF_HUB_ETAG_TIMEOUT=1 sets
    hub.hang = True
    with pytest.raises(WeightsError) as err:
        W.resolve_weights("tiny-tofu", registry=registry)
    msg = str(err.value)
    assert f"the Hugging Face Hub at {hub.url} did not answer in time" in msg
    assert "HF_HUB_ETAG_TIMEOUT" in msg and "`adcvsr download tiny-tofu`" in msg
    assert [r.method for r in hub.requests] == ["GET"]  # the one metadata request, not retried


def test_http_404_file_repo_revision(hub, registry, tmp_path):
    with pytest.raises(
        WeightsError, match=rf"file nope.safetensors does not exist in {NATIVE_REPO} at revision"
    ):
        W.resolve_weights(f"hf://{NATIVE_REPO}/nope.safetensors@{COMMIT}")
    with pytest.raises(
        WeightsError,
        match=r"repository test/absent was not found on http://127.0.0.1:\d+ \(or it is private",
    ):
        W.resolve_weights("hf://test/absent/m.safetensors@main")
    with pytest.raises(WeightsError, match=rf"revision 'v9' does not exist in {NATIVE_REPO}"):
        W.resolve_weights(f"hf://{NATIVE_REPO}/model.safetensors@v9")


def test_http_500_is_retried_by_the_library_then_fails_clearly(hub, registry, no_backoff):
    hub.file(NATIVE_REPO, "model.safetensors").head_status = 500
    with pytest.raises(
        WeightsError,
        match=r"answered HTTP 500 for model.safetensors from test/tiny-native@.*server error",
    ):
        W.resolve_weights("tiny-native", registry=registry)
    # One metadata request, then huggingface_hub's five retries; never a download.
    assert (hub.count("HEAD", "model.safetensors"), hub.count("GET")) == (7, 0)
    assert len(no_backoff) == 5


def test_http_500_on_get(hub, registry, tmp_path):
    hub.file(NATIVE_REPO, "model.safetensors").plan = ["503"]
    with pytest.raises(WeightsError, match=r"answered HTTP 503 for model.safetensors"):
        W.resolve_weights("tiny-native", registry=registry)
    assert _blobs(tmp_path, NATIVE_REPO) == []


def test_body_cut_off_restarts_cleanly(hub, registry, tiny, caplog, no_backoff):
    import logging

    hub.file(PICKLE_REPO, DEC).plan = ["cut"]
    w = W.resolve_weights("tiny-adcsr", registry=registry)
    _assert_same_state(w.path, tiny["state"])
    assert hub.count("GET", DEC) == 2
    # The library's warning stays on its own logger, for the application to show or not.
    assert any(
        r.name.startswith("huggingface_hub")
        and r.levelno == logging.WARNING
        and "resume" in r.getMessage()
        for r in caplog.records
    )


def test_body_cut_off_resumes_with_a_range_request(hub, tmp_path, tiny, no_backoff):
    # Bigger than the client's 10 MB chunk, so the part received before the cut is kept.
    big = tmp_path / "big.safetensors"
    save_native(tiny["state"], tiny_dims(), big, source="test", metadata={"pad": "x" * (12 << 20)})
    f = hub.add_file(NATIVE_REPO, "big.safetensors", big.read_bytes())
    f.plan = ["cut:0.9"]
    w = W.resolve_weights(f"hf://{NATIVE_REPO}/big.safetensors@{COMMIT}")
    assert w.path.read_bytes() == big.read_bytes()
    ranges = [r.range for r in hub.requests if r.method == "GET" and "big" in r.path]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")


def test_cut_off_then_server_error_leaves_nothing_half_written(hub, registry, tmp_path, no_backoff):
    hub.file(NATIVE_REPO, "model.safetensors").plan = ["cut", "500"]
    with pytest.raises(WeightsError, match="answered HTTP 500"):
        W.resolve_weights("tiny-native", registry=registry)
    hub_dir = tmp_path / "hf" / "hub"
    assert [
        p
        for p in hub_dir.rglob("*")
        if p.is_file() and ("blobs" in p.parts or "snapshots" in p.parts)
    ] == []
    # The next try starts over and succeeds.
    assert W.resolve_weights("tiny-native", registry=registry).path.is_file()


def test_stale_partial_file_from_a_killed_run_is_not_reused(hub, registry, tmp_path, tiny):
    import hashlib

    blobs = tmp_path / "hf" / "hub" / f"models--{NATIVE_REPO.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    sha = hashlib.sha256(tiny["native"]).hexdigest()
    (blobs / f"{sha}.deadbeef.incomplete").write_bytes(b"garbage" * 100)
    w = W.resolve_weights("tiny-native", registry=registry)
    assert w.path.read_bytes() == tiny["native"]


# ----------------------------------------------------------------------------- commands


def test_list_models_reports_cache_state(hub, registry, tmp_path):
    rows = {r.name: r for r in W.list_models(registry=registry)}
    assert list(rows) == ["tiny-adcsr", "tiny-tofu", "tiny-native", "tiny-vsr"]
    assert not rows["tiny-adcsr"].cached and rows["tiny-adcsr"].detail == "not downloaded"
    assert rows["tiny-vsr"].detail == "not yet released" and not rows["tiny-vsr"].available
    assert rows["tiny-adcsr"].pinned and not rows["tiny-tofu"].pinned

    w = W.resolve_weights("tiny-adcsr", registry=registry)
    W.resolve_weights("tiny-native", registry=registry)
    hub.requests.clear()
    rows = {r.name: r for r in W.list_models(registry=registry)}
    a = rows["tiny-adcsr"]
    assert (a.cached, a.verified, a.path, a.size_bytes) == (
        True,
        True,
        w.path,
        w.path.stat().st_size,
    )
    assert a.source_bytes > 0 and a.parameters > 0 and a.temporal_blocks is False
    assert rows["tiny-native"].verified and rows["tiny-native"].size_bytes > 0
    _flip_byte(w.path)
    a = {r.name: r for r in W.list_models(registry=registry)}["tiny-adcsr"]
    assert a.cached and not a.verified and a.detail.startswith("corrupt")
    w.path.unlink()
    a = {r.name: r for r in W.list_models(registry=registry)}["tiny-adcsr"]
    assert (a.cached, a.detail) == (False, "sources downloaded, not converted yet")
    assert hub.requests == []


def test_download_reports_each_model_and_goes_on(hub, registry, no_backoff):
    hub.file(NATIVE_REPO, "model.safetensors").head_status = 500
    results = W.download(["tiny-adcsr", "tiny-native"], registry=registry)
    assert [(r.name, r.ok) for r in results] == [("tiny-adcsr", True), ("tiny-native", False)]
    assert results[0].weights is not None and results[0].weights.path.is_file()
    assert isinstance(results[1].error, WeightsError) and "HTTP 500" in str(results[1].error)
    # Default model; unknown names fail before any request.
    assert [r.name for r in W.download(registry=registry)] == ["tiny-adcsr"]
    hub.requests.clear()
    with pytest.raises(WeightsError, match="unknown model 'bogus'"):
        W.download(["tiny-native", "bogus"], registry=registry)
    assert hub.requests == []


def test_cache_files_follow_the_umask(hub, registry, tmp_path):
    """A shared ADCVSR_CACHE: converted files, their hashes and pins are group-readable."""
    old = os.umask(0o002)
    try:
        W.resolve_weights("tiny-tofu", registry=registry)
    finally:
        os.umask(old)
    files = [
        p for p in (tmp_path / "adcvsr").rglob("*") if p.is_file() and not p.name.endswith(".lock")
    ]
    assert {p.suffix for p in files} == {".safetensors", ".sha256", ".json"}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {
        p.name: "0o664" for p in files
    }


def test_download_force_fetches_again(hub, registry):
    W.download(["tiny-native"], registry=registry)
    hub.requests.clear()
    (r,) = W.download(["tiny-native"], registry=registry, force=True)
    assert r.ok and hub.count("GET") == 1


def test_cache_dir_argument_wins_over_env(hub, registry, tmp_path):
    w = W.resolve_weights("tiny-adcsr", registry=registry, cache_dir=tmp_path / "elsewhere")
    assert w.path.parent == tmp_path / "elsewhere" / "native"
    assert not (tmp_path / "adcvsr" / "native").exists()
    # The Hub downloads are in that folder too, so copying it is enough to work offline.
    hub_files = [p for p in (tmp_path / "elsewhere" / "hub").rglob("*") if p.is_file()]
    assert hub_files and not (tmp_path / "hf" / "hub").exists()
    hub.requests.clear()
    again = W.resolve_weights("tiny-native", registry=registry, cache_dir=tmp_path / "elsewhere")
    off = W.resolve_weights(
        "tiny-native", registry=registry, cache_dir=tmp_path / "elsewhere", offline=True
    )
    assert off.path == again.path and hub.count("GET") == 1


def test_offline_and_never_pinned_says_so(hub, registry):
    with pytest.raises(WeightsError) as err:
        W.resolve_weights("tiny-tofu", registry=registry, offline=True)
    msg = str(err.value)
    assert f"missing {NET} and {DEC} from {PICKLE_REPO}@main" in msg and "offline mode is on" in msg
    assert "`adcvsr download tiny-tofu` on a connected machine" in msg
    assert hub.requests == []


def test_the_old_ref_form_works_and_names_the_hubs_form(hub, tmp_path):
    events: list[dict] = []
    w = W.resolve_weights(f"hf://{NATIVE_REPO}/model.safetensors@{COMMIT}", on_event=events.append)
    assert w.origin == "hub" and w.source == f"hf://{NATIVE_REPO}@{COMMIT}/model.safetensors"
    assert any(
        e["type"] == "notice"
        and f"write hf://{NATIVE_REPO}@{COMMIT}/model.safetensors" in e["message"]
        for e in events
    )


@pytest.mark.parametrize(
    "status,expect",
    [
        (
            401,
            r"answered HTTP 401 for model.safetensors .*\(access refused: private or gated repo\? set HF_TOKEN\)",
        ),
        (
            403,
            r"answered HTTP 403 for model.safetensors .*\(access refused: private or gated repo\? set HF_TOKEN\)",
        ),
    ],
)
def test_http_401_403(hub, registry, status, expect):
    hub.file(NATIVE_REPO, "model.safetensors").head_status = status
    with pytest.raises(WeightsError, match=expect):
        W.resolve_weights("tiny-native", registry=registry)


def test_two_runs_at_once_convert_once_and_agree(hub, registry):
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    events: list[dict] = []
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(
            lambda _: W.resolve_weights("tiny-adcsr", registry=registry, on_event=events.append),
            range(2),
        )
    assert a.path == b.path and a.sha256 == b.sha256
    assert hashlib.sha256(a.path.read_bytes()).hexdigest() == a.sha256
    assert Path(str(a.path) + ".sha256").read_text().split()[0] == a.sha256
    assert sum(1 for e in events if e["type"] == "convert" and e["stage"] == "write") == 1


def test_local_safetensors_whose_header_length_starts_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    """The first byte of a safetensors file is the low byte of its header length: 0x80 happens."""
    import struct

    from tiny import tiny_dims

    from adcvsr_cli.model import AdcVSR, init_random_
    from adcvsr_cli.weights import resolve_weights, save_native

    m = AdcVSR(tiny_dims())
    init_random_(m)
    # Pad the metadata until the header length's low byte is 0x80. The length is a multiple of
    # 8 that grows with the pad, so the first guess hits; the scan is only a fallback.
    save_native(m.state_dict(), m.dims, tmp_path / "probe.safetensors", source="")
    first = struct.unpack("<Q", (tmp_path / "probe.safetensors").read_bytes()[:8])[0]
    for pad in ((0x80 - first) % 256, *range(0, 512)):
        p = tmp_path / f"m{pad}.safetensors"
        save_native(m.state_dict(), m.dims, p, source="x" * pad)
        if p.read_bytes()[:1] == b"\x80":
            break
        p.unlink()
    else:
        pytest.fail("no padding gave a 0x80 first byte")
    assert struct.unpack("<Q", p.read_bytes()[:8])[0] & 0xFF == 0x80
    r = resolve_weights(str(p), cache_dir=tmp_path / "cache")
    assert r.dims == m.dims and r.origin == "local"


def test_cli_download_models_and_offline_upscale_through_the_fake_hub(hub, registry, tmp_path):
    """The real console script: `adcvsr download`, `adcvsr models --json`, then an upscale by
    registry name that works offline from the cache, and an offline miss that says what to do."""
    import subprocess

    import av
    import numpy as np

    exe = shutil.which("adcvsr")
    assert exe
    env = dict(
        os.environ, ADCVSR_REGISTRY=str(registry), HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1"
    )
    env.pop("HF_HUB_OFFLINE", None)

    r = subprocess.run(
        [exe, "download", "tiny-adcsr"], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "tiny-adcsr: ok" in r.stderr and "Traceback" not in r.stderr
    first = hub.count()
    assert first > 0

    r = subprocess.run(
        [exe, "models", "--json"], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["tiny-adcsr"]["cached"] and rows["tiny-adcsr"]["verified"]
    assert not rows["tiny-native"]["cached"] and rows["tiny-vsr"]["available"] is False

    img = (np.arange(32 * 48 * 3) % 251).astype(np.uint8).reshape(32, 48, 3)
    src = tmp_path / "in.png"
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    with av.open(str(src), "w", format="image2") as c:
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = 48, 32, "rgb24"
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    off = dict(env, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    r = subprocess.run(
        [
            exe,
            "upscale",
            str(src),
            str(tmp_path / "out.png"),
            "--weights",
            "tiny-adcsr",
            "--device",
            "cpu",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=off,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.png").exists()
    assert hub.count() == first  # served from the cache: not one request

    r = subprocess.run(
        [
            exe,
            "upscale",
            str(src),
            str(tmp_path / "out2.png"),
            "--weights",
            "tiny-native",
            "--offline",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 1
    assert "adcvsr download tiny-native" in r.stderr and "--weights PATH" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out2.png").exists()
