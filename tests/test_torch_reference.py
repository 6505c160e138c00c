"""The PyTorch reference of the speed benchmark: each network has rdsweep's parameters, tensor by
tensor, and trains; it computes rdsweep's loss (analytic KL where rdsweep uses it); its
channels-last and compiled variants compute the same; the PixelCNN is causal. Skipped without
torch (the `bench` extra)."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # correctness only: one thread does not stall when the cores are busy

from benchmarks import layer_profile as lp  # noqa: E402  (after the skip)
from benchmarks import torch_reference as ref  # noqa: E402
from rdsweep.bounds import rate_distortion, rate_estimator  # noqa: E402
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


@pytest.mark.parametrize("name", NAMES)
def test_rate_is_analytic_where_rdsweeps_is(name, make_cfg):
    """Closed-form KL exactly where rdsweep's default computes it (a Gaussian encoder and
    N(0, I)), else the Monte Carlo rate; from shapes alone."""
    model = build_model(make_cfg(*ref.REFERENCES[name].overrides))
    key, x = jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1))
    terms = jax.eval_shape(lambda: model.apply(model.init(key, x, key), x, key))
    assert ref.build(name).analytic_kl == (rate_estimator(terms) == "analytic")


def _load_mlp(vae, params):
    """Copies rdsweep's default (mlp) parameters into the reference's mlp VAE."""
    enc, dec = params["encoder"], params["decoder"]
    pairs = [(vae.encoder.body[1], enc["MLP_0"]["Dense_0"]),
             (vae.encoder.body[3], enc["MLP_0"]["Dense_1"]),
             (vae.encoder.loc, enc["loc"]), (vae.encoder.scale, enc["scale"]),
             *[(vae.decoder.net[2 * i], dec["MLP_0"][f"Dense_{i}"]) for i in range(3)]]
    with torch.no_grad():
        for layer, p in pairs:
            layer.weight.copy_(torch.from_numpy(np.array(p["kernel"])).T)  # flax: (in, out)
            layer.bias.copy_(torch.from_numpy(np.array(p["bias"])))


def test_mlp_loss_is_rdsweeps(make_cfg):
    """Same parameters, images and noise: the reference's rate, distortion and loss are those
    of rdsweep's train_step (rdsweep.bounds), with the analytic KL; forced to the Monte Carlo
    rate, it gives rdsweep's Monte Carlo estimate."""
    cfg = make_cfg(*ref.REFERENCES["mlp"].overrides)
    model = build_model(cfg)
    key = jax.random.PRNGKey(0)
    x = (jax.random.uniform(jax.random.PRNGKey(1), (4, 28, 28, 1)) < 0.3).astype(jnp.float32)
    params = model.init(key, x, key)["params"]
    terms = model.apply({"params": params}, x, key)
    assert rate_estimator(terms) == "analytic"
    bounds = {k: float(v.mean()) for k, v in rate_distortion(terms).items()}
    noise = jax.random.normal(key, (1, 4, ref.LATENT_DIM))[0]  # e(z|x)'s draw from `key`
    vae = ref.build("mlp")
    _load_mlp(vae, params)
    args = (torch.from_numpy(np.array(x)).permute(0, 3, 1, 2), cfg.beta,
            torch.from_numpy(np.array(noise)))
    loss, rate, distortion = (v.item() for v in vae(*args))
    np.testing.assert_allclose(rate, bounds["rate"], rtol=1e-5)
    np.testing.assert_allclose(distortion, bounds["distortion"], rtol=1e-5)
    np.testing.assert_allclose(loss, bounds["distortion"] + cfg.beta * bounds["rate"],
                               rtol=1e-5)
    vae.analytic_kl = False
    np.testing.assert_allclose(vae(*args)[1].item(), bounds["rate_mc"], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", SMALL)
def test_channels_last_computes_the_same(name):
    """The channels-last variant: the same loss for the same parameters, images and noise, and
    a fused Adam step that keeps the conv weights channels-last."""
    torch.manual_seed(0)
    model = ref.build(name)
    twin = copy.deepcopy(model)
    x = torch.randint(0, 2, (2, 1, 28, 28)).float()
    noise = torch.randn(2, ref.LATENT_DIM)
    expected = ref.prepare(model, ref.Variant())(x, 1.0, noise)
    forward = ref.prepare(twin, ref.Variant(channels_last=True))
    for got, want in zip(forward(x, 1.0, noise), expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
    assert torch.isfinite(ref.train_step(forward, ref.make_optimizer(twin), x))
    nhwc = [p for p in twin.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert ref.convolves(name) == bool(nhwc)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in nhwc)


@pytest.mark.slow  # inductor compiles C++: about a minute
def test_compiled_forward_computes_the_same():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = ref.build("mlp")
    x = torch.randint(0, 2, (4, 1, 28, 28)).float()
    noise = torch.randn(4, ref.LATENT_DIM)
    expected = ref.prepare(model, ref.Variant())(x, 1.0, noise)
    compiled = ref.prepare(model, ref.Variant("default"))
    for got, want in zip(compiled(x, 1.0, noise), expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
    assert torch.isfinite(ref.train_step(compiled, ref.make_optimizer(model), x))
    assert all(p.grad is not None for p in model.parameters())
