"""Shared fixtures. Real-data tests read the prepared tfds data_dir named by TFDS_DATA_DIR."""

import os

import pytest
from hydra import compose, initialize_config_module

from rdsweep import config as config_lib


@pytest.fixture(scope="session")
def tfds_dir():
    path = os.environ.get("TFDS_DATA_DIR")
    if not path or not os.path.isdir(os.path.join(path, "binarized_mnist")):
        pytest.fail("set TFDS_DATA_DIR to a tfds data_dir with binarized_mnist and mnist "
                    "(here: ../shared/tfds); see the README's test command")
    return os.path.abspath(path)


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """A cache of decoded arrays for this test session only (subprocesses inherit it)."""
    path = str(tmp_path_factory.mktemp("rdsweep-cache"))
    os.environ["RDSWEEP_CACHE"] = path
    return path


@pytest.fixture(scope="session")
def make_cfg(tfds_dir):
    """compose(overrides) -> the job config, as the rdsweep command would build it."""
    config_lib.register()

    def make(*overrides):
        with initialize_config_module(config_module="rdsweep.conf", version_base="1.3"):
            return compose("config", overrides=[f"data.dir={tfds_dir}", *overrides])

    return make
