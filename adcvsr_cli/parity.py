"""The parity fixture's deterministic weights (the recipe of ``fixtures/adcsr/README.md``).

Used by the tests (to write released-format files) and by the benchmark (to check precision on
a card against the fixture). Every distinct tensor gets its values from its canonical key.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import torch

from .model import scale_standard_normal


def recipe_tensor(key: str, shape: list[int]) -> torch.Tensor:
    """The fixture's value for canonical key ``key``: computed in float64, returned as float32."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    t = torch.randn(shape, generator=g, dtype=torch.float64)
    return scale_standard_normal(key, t).to(torch.float32)


def manifest_state_dicts(manifest: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(net_params dict, half-decoder ``decoder.*`` dict) in the released key names, aliases
    sharing one tensor, from ``adcsr_checkpoint_keys.json``."""
    rows = json.loads(Path(manifest).read_text())
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


def manifest_native_state(manifest: Path) -> dict[str, torch.Tensor]:
    """The same weights under native names (the converter's mapping)."""
    from .weights import map_state

    net, dec = manifest_state_dicts(manifest)
    state, _merged, _ignored = map_state(net, dec)
    return state
