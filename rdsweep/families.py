"""The paper's 12 families as config groups: `family=-+v` (appendix F's conv-scale parts) and
`mlp_family=-+v` (the same kinds of part at MLP scale, which converge on a CPU). A code names
the encoder, decoder and marginal in that order: "-" the plain part, "+" the powerful one
(IAF encoder, PixelCNN decoder, MAF marginal), "v" the VampPrior marginal.
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, List

from hydra.core.config_store import ConfigStore

PARTS = ("encoder", "decoder", "marginal")
# group -> part -> code -> the choices it makes (group choices and values)
SCALES: Dict[str, Dict[str, Dict[str, Dict[str, Any]]]] = {
    "family": {
        "encoder": {"-": {"encoder": "conv"}, "+": {"encoder": "iaf", "encoder/base": "conv"}},
        "decoder": {"-": {"decoder": "conv"}, "+": {"decoder": "pixelcnn"}},
        "marginal": {"-": {"marginal": "gaussian"}, "+": {"marginal": "maf"},
                     "v": {"marginal": "vamp"}},
    },
    "mlp_family": {
        "encoder": {"-": {"encoder": "mlp"}, "+": {"encoder": "iaf", "encoder/base": "mlp"}},
        "decoder": {"-": {"decoder": "mlp"},
                    "+": {"decoder": "pixelcnn", "decoder.size": "tiny"}},
        "marginal": {"-": {"marginal": "gaussian"}, "+": {"marginal": "maf"},
                     "v": {"marginal": "vamp"}},
    },
}
CODES = ["".join(c) for c in itertools.product("-+", "-+", "-+v")]


def family_node(group: str, code: str) -> Dict[str, Any]:
    """The global config node of one family: its group overrides, then its values."""
    defaults: List[Any] = []
    values: Dict[str, Any] = {}
    for part, letter in zip(PARTS, code):
        for key, value in SCALES[group][part][letter].items():
            if "." in key:
                outer, inner = key.split(".")
                values.setdefault(outer, {})[inner] = value
            else:
                defaults.append({f"override /{key}": value})
    return {"defaults": defaults + ["_self_"], **values}


def register() -> None:
    """Stores both family groups in Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    for group in SCALES:
        for code in CODES:
            cs.store(group=group, name=code, node=family_node(group, code), package="_global_")
