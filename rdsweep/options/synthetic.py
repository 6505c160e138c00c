"""Data option synthetic: structured binary images generated in memory, for tests and demos.

Each image is a "bars" picture: over an H x W grid, horizontal bars (2 pixels thick) may sit at
H // 4 rows and vertical bars at W // 4 columns, each present independently with probability
`bar_prob`; a pixel is ink where any bar covers it, then flipped with probability `noise`. So the
images are made of few independent binary factors, with the entropy of those factors,
(H // 4 + W // 4) * H(bar_prob) nats per image (at noise 0), a known target for what z can carry.
Nothing is read from disk: the splits are drawn from numpy's generator seeded by (`seed`, split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from rdsweep.data import DataSource, Split
from rdsweep.option import Option, at_least, require


def bars(n: int, shape: Tuple[int, int, int], bar_prob: float, noise: float,
         rng: np.random.Generator) -> np.ndarray:
    """n bars images (n, H, W, C) uint8 in {0, 255} (the same picture in every channel)."""
    height, width, channels = shape
    rows = rng.random((n, height // 4)) < bar_prob
    cols = rng.random((n, width // 4)) < bar_prob
    # bar i covers pixels 4i+1 and 4i+2 of its axis
    row_ink = np.zeros((n, height), bool)
    col_ink = np.zeros((n, width), bool)
    for offset in (1, 2):
        row_ink[:, offset:4 * (height // 4):4] |= rows
        col_ink[:, offset:4 * (width // 4):4] |= cols
    ink = row_ink[:, :, None] | col_ink[:, None, :]
    ink ^= rng.random(ink.shape) < noise
    return np.repeat((ink * 255).astype(np.uint8)[..., None], channels, axis=-1)


@dataclass
class SyntheticBars(DataSource):
    """Bars images of data.image_shape, generated in memory (see the module docstring)."""

    _target_: str = f"{__name__}.SyntheticBars"
    name: str = "synthetic"
    train_examples: int = 2000
    test_examples: int = 500
    validation_examples: int = 0  # a validation split for early stopping (0: none)
    bar_prob: float = 0.15
    noise: float = 0.0  # probability of flipping each pixel
    seed: int = 0

    def check(self, key: str) -> None:
        super().check(key)
        shape = self.image_shape
        require(len(shape) == 3 and min(shape[:2]) >= 4 and shape[2] >= 1,
                f"{key}.image_shape", shape,
                "must be [height, width, channels] with height, width >= 4 and channels >= 1")
        at_least(f"{key}.train_examples", self.train_examples, 1)
        at_least(f"{key}.test_examples", self.test_examples, 1)
        at_least(f"{key}.validation_examples", self.validation_examples, 0)
        require(0 <= self.bar_prob <= 1, f"{key}.bar_prob", self.bar_prob, "must be in [0, 1]")
        require(0 <= self.noise <= 1, f"{key}.noise", self.noise, "must be in [0, 1]")
        at_least(f"{key}.seed", self.seed, 0)

    def _draw(self, n: int, split: int) -> Split:
        shape = tuple(int(s) for s in self.image_shape)
        return Split(bars(n, shape, self.bar_prob, self.noise,
                          np.random.default_rng([self.seed, split])))

    def load(self) -> Tuple[Split, Split]:
        return self._draw(self.train_examples, 0), self._draw(self.test_examples, 1)

    def has_validation(self) -> bool:
        return self.validation_examples > 0

    def load_validation(self) -> Optional[Split]:
        return self._draw(self.validation_examples, 2) if self.has_validation() else None


OPTIONS = [
    Option("data", "synthetic", SyntheticBars,
           "bars images generated in memory (no files): tests and demos"),
]
