"""Shared fixtures. Tests that read the real tfds data ask for `tfds_dir` (directly or through
`real_cfg`), which marks them slow; the fast tier (`pytest -m "not slow"`) needs no dataset. Tests
that launch several processes are marked slow where they are defined."""

import os

import jax
import pytest
from hydra import compose, initialize_config_module

from rdsweep import registry, resolvers


def pytest_collection_modifyitems(items):
    for item in items:
        if "tfds_dir" in item.fixturenames:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tfds_dir():
    path = os.environ.get("TFDS_DATA_DIR")
    if not path or not os.path.isdir(os.path.join(path, "binarized_mnist")):
        pytest.fail("set TFDS_DATA_DIR to a tfds data_dir with binarized_mnist and mnist "
                    "(here: ../shared/tfds), or run the fast tier: pytest -m 'not slow'")
    return os.path.abspath(path)


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """A cache of decoded arrays and compiled programs for this test session only, shared by
    its xdist workers and inherited by subprocesses (as a machine's sweeps share one): tests that
    build the same program again, in-process too, skip compiling it. Every program is cached, not
    only those that took a second to compile (JAX's default): the tests' runs are small, and
    most of a launch's compilations are small ones."""
    session = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's folder is in the session's
        session = session.parent
    path = str(session / "rdsweep-cache")
    os.makedirs(path, exist_ok=True)
    os.environ["RDSWEEP_CACHE"] = path
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_compilation_cache_dir", os.path.join(path, "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    return path


@pytest.fixture(scope="session")
def make_cfg():
    """compose(overrides) -> the job config, as the rdsweep command would build it."""
    registry.register()
    resolvers.register()

    def make(*overrides):
        with initialize_config_module(config_module="rdsweep.conf", version_base="1.3"):
            return compose("config", overrides=list(overrides))

    return make


@pytest.fixture(scope="session")
def real_cfg(make_cfg, tfds_dir):
    """make_cfg with the real data_dir (slow tier)."""
    return lambda *overrides: make_cfg(f"data.dir={tfds_dir}", *overrides)
