"""A run's identity: which config keys make two runs different.

Everything that compares runs calls this module: the run's hash (its folder's owner, checkpoints,
resume), the sweep's check for jobs that would train the same model, the grid launcher's grouping,
the names of run folders (Hydra's override_dirname) and of re-evaluations, and the report's
settings (rdsweep.report.settings)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from rdsweep import registry
from rdsweep.config import job_config

# Where data and caches are found, where results are reported and how XLA compiles the step:
# none of them changes what a run trains. Each entry stands for the key and everything under it.
NOT_IDENTITY = ("data.dir", "data.download", "data.cache_dir", "compilation_cache_dir",
                "tracker", "train.fusions")
REPLICATE = "seed"  # runs that differ only in it are seeds of one setting
_ALIAS = re.compile(r"^\$\{(\w+)\}$")


def in_identity(key: str) -> bool:
    """Whether a dotted config key can make two runs different."""
    return not any(key == k or key.startswith(k + ".") for k in NOT_IDENTITY)


def identity(cfg: DictConfig) -> Dict[str, Any]:
    """The resolved job config without the NOT_IDENTITY keys, as a nested dict."""
    tree = OmegaConf.to_container(job_config(cfg))
    for key in NOT_IDENTITY:
        *path, leaf = key.split(".")
        node = tree
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return tree


def config_hash(cfg: DictConfig) -> str:
    """A short, stable identity of a run: sha256 of `identity`, written as sorted YAML."""
    text = OmegaConf.to_yaml(OmegaConf.create(identity(cfg)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
    """A nested dict as {dotted key: leaf}; lists become tuples (hashable, comparable)."""
    if isinstance(tree, dict):
        out: Dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tuple(tree) if isinstance(tree, list) else tree}


@functools.lru_cache(maxsize=None)
def aliases() -> Tuple[str, ...]:
    """The top-level keys that options read only through an interpolation (a field whose default
    is "${key}": beta, sigma, latent_dim, size, ...). What a run trains with is the options'
    resolved copy, so an alias says nothing of its own about a run."""
    found: Dict[str, None] = {}
    for table in registry.options().values():
        for opt in table.values():
            node = opt.node if isinstance(opt.node, type) else type(opt.node)
            for f in dataclasses.fields(node):
                match = _ALIAS.match(str(f.default))
                if match:
                    found[match.group(1)] = None
    return tuple(found)


def trained(cfg: DictConfig) -> Dict[str, Any]:
    """What a run trains, key by key: the flattened identity without the aliases."""
    flat = flatten(identity(cfg))
    return {key: value for key, value in flat.items() if key not in aliases()}


def knob(objective: Any) -> Optional[str]:
    """The swept key of an objective node or option (`KNOB` of its config class: "beta" for
    objective=beta), None if it declares none or is none of the registry's."""
    opt = registry.chosen({"objective": objective}, "objective") if isinstance(
        objective, (dict, DictConfig)) else objective
    node = getattr(opt, "node", None)
    return getattr(node, "KNOB", None)


def same_model_reason(a: DictConfig, b: DictConfig) -> Optional[str]:
    """Why two configs would train the same model, or None if they would not: they differ only
    in aliases that no option reads ("beta" with objective=target_rate), or only outside the
    identity (data.dir, ...), or not at all."""
    if trained(a) != trained(b):
        return None
    flat_a, flat_b = flatten(OmegaConf.to_container(job_config(a))), flatten(
        OmegaConf.to_container(job_config(b)))
    differ = [k for k in dict.fromkeys([*flat_a, *flat_b]) if flat_a.get(k) != flat_b.get(k)]
    unread = [k for k in differ if k in aliases()]
    if unread:
        return (f"{unread[0]} is read by no option of this config "
                f"(objective={registry.option_name(a, 'objective')}); give {unread[0]} a "
                "single value")
    if differ:
        return (f"{differ[0]} says where data, caches or results are, or how XLA compiles, "
                f"not what is trained; give {differ[0]} a single value")
    return "a value is listed twice; list each value once"


def grid_key(cfg: DictConfig, scalars: Iterable[str]) -> str:
    """The trained config less `scalars` (dotted keys, the objective's knob included as
    "objective.<knob>"): runs with equal keys can train side by side as one program."""
    skip = set(scalars)
    flat = trained(cfg)
    return repr(sorted((k, v) for k, v in flat.items() if k not in skip))


def unnamed_keys() -> List[str]:
    """The override keys left out of a run folder's name (Hydra's override_dirname
    exclude_keys): every NOT_IDENTITY key, and each tracker's own keys (tracker.uri, ...)."""
    keys = dict.fromkeys(NOT_IDENTITY)
    for opt in registry.options()["tracker"].values():
        node = opt.node if isinstance(opt.node, type) else type(opt.node)
        keys.update(dict.fromkeys(f"tracker.{f.name}" for f in dataclasses.fields(node)
                                  if not f.name.startswith("_")))
    return list(keys)
