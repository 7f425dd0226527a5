"""Build files in the released AdcSR layout for tests: from the parity manifest, or tiny dims."""

from __future__ import annotations

import json
import math
import sys
import types
import zlib
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURE_DIR = SHARED / "fixtures" / "adcsr"
MANIFEST = FIXTURE_DIR / "adcsr_checkpoint_keys.json"
PARITY = FIXTURE_DIR / "parity_a.safetensors"

LIGHTNING_MODULE = "pytorch_lightning.callbacks.model_checkpoint"


def recipe_tensor(key: str, shape: list[int]) -> torch.Tensor:
    """The fixture's deterministic value for canonical key ``key`` (see its README)."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    t = torch.randn(shape, generator=g, dtype=torch.float64)
    if len(shape) >= 2:
        t = t / math.sqrt(math.prod(shape[1:]))
    elif "norm" in key and key.endswith(".weight"):
        t = 1 + 0.1 * t
    else:
        t = 0.05 * t
    return t.to(torch.float32)


def manifest_state_dicts() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(net_params dict, half-decoder ``decoder.*`` dict) with aliases sharing one tensor."""
    rows = json.loads(MANIFEST.read_text())
    out = []
    for part in ("net_params", "half_decoder"):
        d: dict[str, torch.Tensor] = {}
        canon: dict[str, torch.Tensor] = {}
        for row in rows[part]:
            k = row.get("alias_of", row["key"])
            if k not in canon:
                canon[k] = recipe_tensor(k, row["shape"])
            d[row["key"]] = canon[k]
        out.append(d)
    return out[0], out[1]


class FakeModelCheckpoint:
    """Pickled under the Lightning class name, as in the real ``halfDecoder.ckpt``."""

    def __init__(self) -> None:
        self.monitor = "val/rec_loss"
        self.best_model_score = torch.tensor(0.25)


def lightning_entries() -> dict:
    """Checkpoint entries that reference the Lightning class, as a key and as an instance."""
    mod = types.ModuleType(LIGHTNING_MODULE)
    FakeModelCheckpoint.__module__ = LIGHTNING_MODULE
    FakeModelCheckpoint.__qualname__ = FakeModelCheckpoint.__name__ = "ModelCheckpoint"
    mod.ModelCheckpoint = FakeModelCheckpoint  # type: ignore[attr-defined]
    sys.modules.setdefault("pytorch_lightning", types.ModuleType("pytorch_lightning"))
    sys.modules.setdefault(
        "pytorch_lightning.callbacks", types.ModuleType("pytorch_lightning.callbacks")
    )
    sys.modules[LIGHTNING_MODULE] = mod
    return {
        "callbacks": {FakeModelCheckpoint: {"best_model_path": "x.ckpt"}},
        "checkpoint_callback": FakeModelCheckpoint(),
    }


def write_manifest_files(net_path: Path, dec_path: Path) -> None:
    """The parity fixture's weights, written in the released formats."""
    net, dec = manifest_state_dicts()
    g = torch.Generator().manual_seed(1)
    ckpt = {
        "epoch": 10,
        "global_step": 200,
        "state_dict": {
            **dec,
            "encoder.conv_in.weight": torch.randn(128, 3, 3, 3, generator=g),
            "loss.logvar": torch.zeros(()),
        },
        **lightning_entries(),
    }
    torch.save(net, net_path)
    torch.save(ckpt, dec_path)
