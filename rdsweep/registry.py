"""The option registry: every `Option` of every module of `rdsweep.options`, and what iterates
them: Hydra's ConfigStore, the checks of a composed config, a run's family code, and the option
reference (docs/options.md, `python -m rdsweep.registry`).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from rdsweep import families
from rdsweep import options as options_package
from rdsweep.config import Config
from rdsweep.option import ConfigError, Option, one_of

GROUPS = ("data", "encoder", "decoder", "marginal", "objective", "tracker")
PARTS = families.PARTS  # the groups of the paper's family code


@functools.lru_cache(maxsize=None)
def options() -> Dict[str, Dict[str, Option]]:
    """group -> option name -> Option, from every module of rdsweep.options."""
    table: Dict[str, Dict[str, Option]] = {group: {} for group in GROUPS}
    for info in pkgutil.iter_modules(options_package.__path__):
        module = importlib.import_module(f"{options_package.__name__}.{info.name}")
        for opt in getattr(module, "OPTIONS", []):
            if opt.name in table[opt.group]:
                raise ValueError(f"option {opt.group}={opt.name} is declared twice")
            table[opt.group][opt.name] = opt
    return table


def register() -> None:
    """Stores the schema and every group option in Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="rdsweep_schema", node=Config)
    for group, table in options().items():
        for name, opt in table.items():
            cs.store(group=group, name=name, node=opt.node)
            for sub, names in opt.subgroups.items():
                for inner in names:
                    cs.store(group=f"{group}/{sub}", name=inner, node=table[inner].node)
    families.register()


def _class_name(target: Any) -> str:
    return str(target).rsplit(".", 1)[-1]


def chosen(cfg: Any, group: str) -> Optional[Option]:
    """The option a config's group uses: a dataset by its name, a part by its `_target_`;
    None if it is none of the registry's."""
    node = OmegaConf.select(cfg, group, throw_on_resolution_failure=False) if isinstance(
        cfg, DictConfig) else cfg.get(group)
    if node is None:
        return None
    table = options()[group]
    if group == "data":
        return table.get(node.get("name"))
    return next((opt for opt in table.values() if opt.target == node.get("_target_")), None)


def option_name(cfg: Any, group: str) -> str:
    """The chosen option's name, or its target's class name if it is none of the registry's."""
    opt = chosen(cfg, group)
    if opt is not None:
        return opt.name
    node = cfg[group] if group in cfg else {}
    return _class_name(node.get("_target_", node.get("name", "?")))


def family_code(cfg: Any) -> str:
    """Paper notation ("-+v") of the encoder, decoder and marginal; where a part has no code in
    the paper, the parts' option names instead ("mlp/mlp/mixture")."""
    parts = [chosen(cfg, group) for group in PARTS]
    if all(opt is not None and opt.code for opt in parts):
        return "".join(opt.code for opt in parts)
    return "/".join(option_name(cfg, group) for group in PARTS)


def all_sizes() -> List[str]:
    """Every size preset name of every option, in order of first appearance."""
    names: Dict[str, None] = {}
    for table in options().values():
        for opt in table.values():
            names.update(dict.fromkeys(getattr(opt.node, "PRESETS", {})))
    return list(names)


def check(cfg: DictConfig) -> None:
    """Raises ConfigError naming the first value out of range: the top level's, each group's
    (its option's own `check`), and the options' requirements on each other."""
    one_of("size", cfg.size, all_sizes())
    Config.check(cfg)
    for group in GROUPS:
        OmegaConf.to_object(cfg[group]).check(group)
    for group in GROUPS:
        opt = chosen(cfg, group)
        for other, allowed in (opt.requires.items() if opt else ()):
            name = option_name(cfg, other)
            if name not in allowed:
                raise ConfigError(
                    f"{other}={name} is invalid with {group}={opt.name}: {group}={opt.name} "
                    f"needs {other}={' or '.join(allowed)}")


def reference() -> str:
    """docs/options.md: every option of every group (its paper code, requirements, keys and size
    presets) and the family groups."""
    lines = ["# Options", "",
             "Generated from the registry: `python -m rdsweep.registry > docs/options.md` "
             "(tests/test_registry.py fails if this file differs). Each option's keys and "
             "defaults are its dataclass in the module named; `size` presets set the keys "
             "left null.", ""]
    for group in GROUPS:
        lines += [f"## {group}", "", "| option | code | what | keys | sizes | module |",
                  "|---|---|---|---|---|---|"]
        for name, opt in options()[group].items():
            node = OmegaConf.structured(opt.node)
            keys = ", ".join(f"`{k}`" for k in node if not k.startswith("_") and k != "defaults")
            notes = "".join(f" Needs {g}={' or '.join(v)}." for g, v in opt.requires.items())
            notes += "".join(f" Nested group {group}/{sub}: {', '.join(v)}."
                             for sub, v in opt.subgroups.items())
            presets = "; ".join(f"{size}: " + ", ".join(f"{k}={_plain(v)}" for k, v in fields.items())
                                for size, fields in getattr(opt.node, "PRESETS", {}).items())
            summary = (opt.summary + "." + notes).replace("|", "\\|")
            lines.append(f"| `{group}={name}` | {opt.code or ''} | {summary} | {keys} | "
                         f"{presets} | `{_module(opt)}` |")
        lines.append("")
    lines += ["## family, mlp_family", "",
              "`family=CODE` (appendix F's conv scale) and `mlp_family=CODE` (MLP scale) set the "
              "encoder, decoder and marginal of a paper family; CODE is one letter per part, in "
              "that order (rdsweep/families.py):", "",
              "| group | part | - | + | v |", "|---|---|---|---|---|"]
    for group, parts in families.SCALES.items():
        for part, letters in parts.items():
            cells = [" ".join(f"{k}={v}" for k, v in letters[c].items()) if c in letters else ""
                     for c in "-+v"]
            lines.append(f"| {group} | {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def _module(opt: Option) -> str:
    node = opt.node if isinstance(opt.node, type) else type(opt.node)
    return node.__module__


if __name__ == "__main__":
    print(reference(), end="")
