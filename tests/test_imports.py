"""Imports: no import cycle anywhere in the package (every module's imports, those inside
functions too, form a graph without cycles), and importing the command changes no global
state (rdsweep.main.start does, when a command or a job starts)."""

import ast
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("rdsweep", "hydra_plugins")


def module_files():
    """module name -> path, for every .py file of the packages."""
    found = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                    if parts[-1] == "__init__":
                        parts = parts[:-1]
                    found[".".join(parts)] = path
    return found


def imports(module, path, known):
    """The package modules that `module` imports anywhere in its file."""
    is_package = path.endswith("__init__.py")
    tree = ast.parse(open(path).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if name in known and name != module}


def graph():
    known = module_files()
    return {m: imports(m, p, known) for m, p in known.items()}


def find_cycle(edges):
    """One cycle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, stack + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycle():
    edges = graph()
    assert len(edges) > 20 and "rdsweep.registry" in edges["rdsweep.validation"]
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


@pytest.mark.parametrize("edges,cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
])
def test_find_cycle_finds_cycles(edges, cycle):
    assert find_cycle(edges) == cycle


def test_imports_inside_functions_count(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from rdsweep import status\n")
    assert imports("rdsweep.m", str(path), {"rdsweep", "rdsweep.status"}) == {
        "rdsweep", "rdsweep.status"}


GLOBAL_STATE = """
import json, logging, sys, threading
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from rdsweep.resolvers import RESOLVERS

def state():
    return {"threading.excepthook": threading.excepthook is threading.__excepthook__,
            "sys.unraisablehook": sys.unraisablehook is sys.__unraisablehook__,
            "logging.raiseExceptions": logging.raiseExceptions is True,
            "resolvers": not any(OmegaConf.has_resolver(name) for name in RESOLVERS),
            "ConfigStore": "rdsweep_schema.yaml" not in ConfigStore.instance().list("")}

import rdsweep.main
imported = state()
rdsweep.main.start()
print(json.dumps([imported, state()]))
"""


def test_importing_the_command_changes_no_global_state():
    """In a fresh interpreter: the interpreter's own hooks, no rdsweep resolver and none of its
    configs after `import rdsweep.main`; every one of them changed by its start()."""
    out = subprocess.run([sys.executable, "-c", GLOBAL_STATE], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    imported, started = json.loads(out.splitlines()[-1])
    assert all(imported.values()), imported
    assert not any(started.values()), started
