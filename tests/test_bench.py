"""The benchmark (benchmarks/): --write replaces the generated table and keeps the hand-written
analysis below its marker; the `layers` section's PixelCNN profile covers the network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.cli import ANALYSIS, keep_analysis
from benchmarks.layer_profile import pixelcnn_layers
from rdsweep.options.pixelcnn import PRESETS, PixelCNNNet


def test_write_keeps_the_hand_written_analysis():
    previous = f"# old table\n| a | 1 |\n\n{ANALYSIS}\n## Why conv is slower\nprofile...\n"
    text = keep_analysis("# new table\n| a | 2 |\n", previous)
    assert text == f"# new table\n| a | 2 |\n\n{ANALYSIS}\n## Why conv is slower\nprofile...\n"
    assert "old table" not in text


def test_write_without_an_analysis_is_the_new_document_alone():
    assert keep_analysis("# new\n", None) == "# new\n"
    assert keep_analysis("# new\n", "# old, no analysis\n") == "# new\n"


def _parameter_count(module, *shapes):
    key = jax.random.PRNGKey(0)
    tree = jax.eval_shape(module.init, key, *(jnp.zeros((1, *s)) for s in shapes))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_pixelcnn_profile_covers_the_network(size):
    """Its layers, each times its count, hold all of PixelCNNNet's parameters but those of the
    first layer (3 shifted convs and 2 1x1 convs of the context, to 2 * depth each) and the 1x1
    output: a layer left out or counted wrong changes the sum."""
    d, image = PRESETS[size]["depth"], (28, 28, 1)
    net = _parameter_count(PixelCNNNet(d, PRESETS[size]["resnets_per_block"]), image, image)
    first = (2 * 3 + 1 * 3 + 2 * 1 + 1 + 1) * 2 * d + 5 * 2 * d  # kernels, then biases
    profiled = sum(layer.count * _parameter_count(layer.flax, *layer.shapes)
                   for layer in pixelcnn_layers(size))
    assert profiled == net - first - (d + 1)
