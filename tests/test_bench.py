"""The benchmark (benchmarks/): --write replaces the generated table and keeps the hand-written
analysis below its marker; the `layers` section's PixelCNN profile covers the network; the
PyTorch reference is the fastest variant that runs; the `priors` section trains each prior."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.cli import ANALYSIS, keep_analysis
from benchmarks.layer_profile import pixelcnn_layers
from benchmarks import sections
from benchmarks.sections import PRIORS, QUICK
from rdsweep.options.pixelcnn import PRESETS, PixelCNNNet


def test_write_keeps_the_hand_written_analysis():
    previous = f"# old table\n| a | 1 |\n\n{ANALYSIS}\n## Why conv is slower\nprofile...\n"
    text = keep_analysis("# new table\n| a | 2 |\n", previous)
    assert text == f"# new table\n| a | 2 |\n\n{ANALYSIS}\n## Why conv is slower\nprofile...\n"
    assert "old table" not in text


def test_write_without_an_analysis_is_the_new_document_alone():
    assert keep_analysis("# new\n", None) == "# new\n"
    assert keep_analysis("# new\n", "# old, no analysis\n") == "# new\n"


@pytest.mark.slow
def test_the_priors_section_times_each_prior_its_epoch_and_its_evaluation(monkeypatch):
    images = np.random.default_rng(0).integers(0, 2, (500, 28, 28, 1)).astype(np.uint8)
    monkeypatch.setattr(sections, "load_split", lambda split, data: images)  # no dataset
    plan = dataclasses.replace(QUICK, steps=3, iwae_samples=(2, 3), large_k=30)
    rows = sections.priors_rows(jnp.asarray(images, jnp.float32), plan)
    assert len(rows) == 2 * len(PRIORS)
    for (train, evaluation), (name, overrides) in zip(zip(rows[::2], rows[1::2]), PRIORS.items()):
        for row in (train, evaluation):
            assert name in row.measurement and " ".join(overrides) in row.measurement
        rate, epoch = re.fullmatch(r"([\d,]+) images/s; ([\d.]+) s", train.value).groups()
        rate = float(rate.replace(",", ""))
        assert rate > 0 and float(epoch) == pytest.approx(50_000 / rate, rel=0.01, abs=0.06)
        assert f"{plan.iwae_examples} test examples, k=3" in evaluation.measurement
        rate, minutes = re.fullmatch(r"([\d,]+) example-samples/s; ([\d.]+) min",
                                     evaluation.value).groups()
        rate = float(rate.replace(",", ""))
        assert float(minutes) == pytest.approx(10_000 * 30 / rate / 60, rel=0.01, abs=0.06)


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


@pytest.mark.parametrize("name", ["mlp", "conv_small"])
def test_torch_reference_skips_a_compile_mode_that_fails(name, monkeypatch):
    """fastest_torch tries the memory formats of a model with convolutions, records a compile
    mode that fails instead of stopping, and returns a working call of the fastest variant."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)  # correctness only
    from benchmarks import torch_reference as ref
    from benchmarks.measure import fastest_torch

    monkeypatch.setattr(ref, "COMPILE_MODES", ("no-such-mode",))
    images = np.zeros((16, 28, 28, 1), np.uint8)
    variant, call, tried = fastest_torch(name, images, 2, 1, 1)
    assert variant.compile_mode is None
    assert tried.pop(ref.Variant("no-such-mode", variant.channels_last)).startswith("failed")
    formats = [ref.Variant(), ref.Variant(channels_last=True)] if name != "mlp" else []
    assert sorted(tried) == sorted(formats)  # timed only where there is a choice
    assert all(rate.endswith("images/s") for rate in tried.values())
    call()


def test_trace_sums_each_operation_and_leaves_out_runtime_spans():
    from benchmarks.trace import operation_totals
    events = [{"ph": "X", "name": "dot.1", "dur": 5.0}, {"ph": "X", "name": "dot.1", "dur": 7.0},
              {"ph": "X", "name": "fusion", "dur": 20.0}, {"ph": "i", "name": "dot.1"},
              {"ph": "X", "name": "ThunkExecutor::Execute", "dur": 100.0},
              {"ph": "X", "name": "$api.py:2479 block_until_ready", "dur": 90.0}]
    assert operation_totals(events) == [("fusion", 20.0, 1), ("dot.1", 12.0, 2)]
