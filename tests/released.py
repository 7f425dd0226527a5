"""Build files in the released AdcSR layout for tests: from the parity manifest, or tiny dims."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch

from adcvsr_cli.parity import manifest_state_dicts as _manifest_state_dicts

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURE_DIR = SHARED / "fixtures" / "adcsr"
MANIFEST = FIXTURE_DIR / "adcsr_checkpoint_keys.json"
PARITY = FIXTURE_DIR / "parity_a.safetensors"

LIGHTNING_MODULE = "pytorch_lightning.callbacks.model_checkpoint"


def manifest_state_dicts() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(net_params dict, half-decoder ``decoder.*`` dict) with aliases sharing one tensor."""
    return _manifest_state_dicts(MANIFEST)


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
