"""What an option is: a config group's choice (encoder=conv, data=mnist, ...), declared beside
its implementation, and the small checks its values use.

Every module of `rdsweep.options` lists its options in a module-level `OPTIONS` list of `Option`;
`rdsweep.registry` collects them. An option's config dataclass checks its own values in
`check(key)` (key: where the node sits, e.g. "encoder" or "encoder.base") and raises ConfigError
with one line naming the key and what is valid.

Size presets have one shape everywhere: a module's `PRESETS = {size: {field: value}}`, and
`preset(module, field)` reads a field that is None from the preset named by the module's `size`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Optional, Sequence, Tuple

from omegaconf import ListConfig


class ConfigError(ValueError):
    """A config value outside its valid range; the message names the option."""


class DataError(RuntimeError):
    """Data that cannot be read as configured; the message says what to do."""


@dataclass(frozen=True)
class Option:
    """One choice of a config group.

    node: the config dataclass (or an instance of it with other defaults, e.g. a dataset);
    code: the model part's letter in the paper's family notation ("-", "+", "v"), or None;
    requires: other groups' options this one works with only, e.g. {"marginal": ("categorical",)};
    subgroups: nested groups of this option and the options of its own group they offer;
    summary: one line for the option reference (docs/options.md).
    """

    group: str
    name: str
    node: Any
    summary: str
    code: Optional[str] = None
    requires: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)
    # Nested groups of this option, e.g. {"base": ("conv", "mlp")}: encoder/base=mlp chooses
    # among those options of the same group, stored at <group>.base.
    subgroups: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.node._target_


def show(value: Any) -> Any:
    return list(value) if isinstance(value, (ListConfig, tuple)) else value


def require(ok: bool, key: str, value: Any, valid: str) -> None:
    """ConfigError "key=value is invalid: valid" unless ok."""
    if not ok:
        raise ConfigError(f"{key}={show(value)} is invalid: {valid}")


def at_least(key: str, value: Any, low: float, integer: bool = True, optional: bool = False,
             also: str = "") -> None:
    """value >= low (a whole number if integer; None allowed if optional)."""
    if optional and value is None:
        return
    kind = "an integer " if integer else "a finite number "
    require(value is not None and math.isfinite(value) and value >= low, key, value,
            f"must be {kind}>= {low:g}{also}")


def above(key: str, value: Any, low: float, optional: bool = False) -> None:
    """A finite value > low (None allowed if optional)."""
    if optional and value is None:
        return
    require(value is not None and math.isfinite(value) and value > low, key, value,
            f"must be a finite number > {low:g}")


def one_of(key: str, value: Any, valid: Collection[str]) -> None:
    require(value in valid, key, value, f"must be one of: {', '.join(valid)}")


def widths(key: str, value: Optional[Sequence[int]], count: Optional[int] = None,
           what: str = "") -> None:
    """A list of layer widths, each >= 1 (and `count` of them if given); None allowed."""
    if value is None:
        return
    ok = len(value) > 0 and min(value) >= 1 and (count is None or len(value) == count)
    many = f"{count} " if count is not None else ""
    require(ok, key, value, f"must list {many}widths >= 1{what}")


def check_size(key: str, size: str, presets: Mapping[str, Mapping[str, Any]]) -> None:
    """size names one of the presets."""
    one_of(key, size, tuple(presets))


def preset(module: Any, name: str) -> Any:
    """module.<name>, or, if that is None, the value of the preset named by module.size."""
    value = getattr(module, name)
    if value is not None:
        return value
    if module.size not in module.PRESETS:
        raise ValueError(f"size must be one of {list(module.PRESETS)}, got {module.size!r}")
    return module.PRESETS[module.size][name]
