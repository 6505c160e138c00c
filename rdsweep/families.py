"""The paper's 12 families as config groups: `family=-+v` (appendix F's conv-scale parts) and
`mlp_family=-+v` (the same kinds of part at MLP scale, small enough to train on a CPU). A code names
the encoder, decoder and marginal in that order: "-" the plain part, "+" the powerful one
(IAF encoder, PixelCNN decoder, MAF marginal), "v" the VampPrior marginal.

At MLP scale the decoder also brings its training budget (Adam at lr 1e-3, held for half the
epochs, then linearly to 0): 40 epochs of batch 128 for the MLP decoder (about 10,000 images/s
on 2 CPU cores), whose test ELBO moves by less than 0.3 nats when trained longer; 3 epochs of
batch 64 for the tiny PixelCNN (about 360 images/s), which is short of convergence
(docs/results.md, "Convergence"). Command-line overrides still win (train.epochs=...).
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
        "decoder": {"-": {"decoder": "mlp", "train.epochs": 40, "train.batch_size": 128,
                          "train.lr_hold_epochs": 20, "train.log_every": 250},
                    "+": {"decoder": "pixelcnn", "decoder.size": "tiny", "train.epochs": 3,
                          "train.batch_size": 64, "train.lr_hold_epochs": 1.5,
                          "train.log_every": 100,
                          # one decoder pass per sample: IWAE's k costs what it does in training
                          "eval.iwae_samples": 5}},
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
