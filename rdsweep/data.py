"""The data-source interface, the examples it gives, and on-device binarization.

A data option (data=binarized_mnist, data=toy, data=synthetic, ...) is a `DataSource`
dataclass: its fields are the config group's keys, and `hydra.utils.instantiate(cfg.data)` builds
the source itself (its `_target_` is its own class). A source gives its train and test splits as
uint8 arrays; batches are drawn and binarized on the device by `prepare_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import MISSING

from rdsweep.option import one_of


class Split(NamedTuple):
    """A split's examples: images (N, *image_shape) uint8 grey levels 0..255, and weights (N,),
    each example's probability when the data is a distribution given exactly, or None for a
    sample of data (every example counts the same)."""

    images: np.ndarray
    weights: Optional[np.ndarray] = None

    def head(self, n: int) -> "Split":
        """The first n examples (weights are normalised where they are used)."""
        return Split(self.images[:n], None if self.weights is None else self.weights[:n])


@dataclass
class DataSource:
    """Base of every data option. Subclasses set `_target_` to themselves and implement `load`."""

    _target_: str = MISSING
    name: str = MISSING  # the data's name (a tensorflow-datasets name, toy, synthetic)
    # static: one fixed draw (data already 0/1 is kept as is); dynamic: Bernoulli(x) per use
    binarization: str = "static"
    image_shape: List[int] = field(default_factory=lambda: [28, 28, 1])  # after preprocessing

    # Whether the examples are pictures (images.png can show them).
    pictures: ClassVar[bool] = True

    def check(self, key: str) -> None:
        """Raises ConfigError naming key.<field> if a value is out of range (no data read)."""
        one_of(f"{key}.binarization", self.binarization, ("static", "dynamic"))

    def check_available(self) -> None:
        """Raises DataError early if the data cannot be read as configured."""

    def load(self) -> Tuple[Split, Split]:
        """(train, test) splits."""
        raise NotImplementedError

    def has_validation(self) -> bool:
        """Whether the source, as configured, has a split for early stopping to watch."""
        return False

    def load_validation(self) -> Optional[Split]:
        """The split early stopping watches (train.early_stopping); None if there is none."""
        return None

    def extra_metrics(self, apply_fn, params, test: Split, key: jax.Array) -> Dict[str, Any]:
        """What a trained model's metrics.json records besides the bounds, for this data."""
        return {}


def prepare_batch(images: jax.Array, key: jax.Array, binarization: str) -> jax.Array:
    """uint8 grey levels -> float32 in {0, 1}: as stored (static, already 0/255) or a fresh
    Bernoulli(x / 255) draw (dynamic)."""
    p = images.astype(jnp.float32) / 255.0
    if binarization == "dynamic":
        return jax.random.bernoulli(key, p).astype(jnp.float32)
    return p
