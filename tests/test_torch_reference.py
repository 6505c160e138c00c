"""The PyTorch reference of the speed benchmark: each network has rdsweep's parameters, tensor by
tensor, and trains; the PixelCNN is causal. Skipped without torch (the `bench` extra)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # correctness only: one thread does not stall when the cores are busy

from benchmarks import layer_profile as lp  # noqa: E402  (after the skip)
from benchmarks import torch_reference as ref  # noqa: E402
from rdsweep.experiment import build_model  # noqa: E402

NAMES = sorted(ref.REFERENCES)
SMALL = [n for n in NAMES if not n.endswith("_paper")]  # the paper sizes only count parameters


def _rdsweep_sizes(cfg):
    """Sizes of the rdsweep model's parameter tensors, from shapes alone (no init to compile)."""
    key = jax.random.PRNGKey(0)
    shapes = jax.eval_shape(build_model(cfg).init, key, jnp.zeros((1, 28, 28, 1)), key)
    return sorted(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(shapes["params"]))


@pytest.mark.parametrize("name", NAMES)
def test_parameters_match_rdsweep(name, make_cfg):
    expected = _rdsweep_sizes(make_cfg(*ref.REFERENCES[name].overrides))
    model = ref.build(name)
    assert ref.parameter_count(model) == sum(expected)
    # Tensor by tensor, not just in total: the same layers.
    assert sorted(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("name", SMALL)
def test_one_step_trains(name):
    torch.manual_seed(0)
    model = ref.build(name)
    optimizer = ref.make_optimizer(model)
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randint(0, 2, (4, 1, 28, 28)).float()
    loss = ref.train_step(model, optimizer, x)
    assert torch.isfinite(loss)
    params = list(model.parameters())
    assert all(p.grad is not None for p in params)  # every parameter reaches the loss
    changed = [not torch.equal(b, p.detach()) for b, p in zip(before, params)]
    # Adam moves exactly the tensors with a nonzero gradient (a flow's hidden MADE layers get
    # none in the first step: its output layer starts at zero).
    assert changed == [bool(p.grad.abs().sum() > 0) for p in params]
    assert sum(changed) > len(params) // 2


def test_pixelcnn_is_causal():
    torch.manual_seed(0)
    net = ref.PixelCNNDecoder("small").net
    x = torch.randint(0, 2, (1, 1, 28, 28)).float().requires_grad_()
    logits = net(torch.randn(1, 1, 28, 28), x)
    for i in (0, 1, 29, 405, 783):  # raster order
        grad, = torch.autograd.grad(logits[0, 0, i // 28, i % 28], x, retain_graph=True)
        grad = grad.flatten()
        assert not grad[i:].any()  # the pixel itself and those after it are unseen
        assert i == 0 or grad[:i].any()


@pytest.mark.parametrize("pixel", [0, 255])
def test_trainer_learns_its_images(pixel):
    """The bench's PyTorch loop trains on the given uint8 images, read as {0, 1}: on constant
    images the loss on those images falls far below its start."""
    images = np.full((16, 28, 28, 1), pixel, np.uint8)
    x = torch.full((8, 1, 28, 28), pixel / 255.0)
    model, train = ref.trainer("mlp", images, batch_size=8)
    before = model(x, 1.0)[0].detach().item()
    train(30)
    assert model(x, 1.0)[0].detach().item() < 0.5 * before


@pytest.mark.parametrize("layer", lp.conv_small_layers() + lp.pixelcnn_layers("small"),
                         ids=lambda layer: layer.label)
def test_profiled_layers_have_their_twins_shape(layer):
    """The bench's `layers` section times each rdsweep layer beside a PyTorch twin: the same
    parameters (tensor sizes) and the same output shape."""
    key = jax.random.PRNGKey(0)
    xs = [jnp.zeros((2, *s)) for s in layer.shapes]
    params = jax.eval_shape(layer.flax.init, key, *xs)
    out = jax.eval_shape(layer.flax.apply, params, *xs)
    twin = layer.torch(ref)
    expected = sorted(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    assert sorted(p.numel() for p in twin.parameters()) == expected
    torch_out = twin(*[torch.zeros(2, c, h, w) for h, w, c in layer.shapes])
    assert tuple(torch_out.permute(0, 2, 3, 1).shape) == out.shape
