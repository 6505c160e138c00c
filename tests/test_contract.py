"""The contract of every registered encoder, decoder, marginal and objective, run over the
registry (rdsweep.registry.options()): an option gets these checks by being registered.

The interface, stated in parts by rdsweep/models.py (the parts), rdsweep/distributions.py (their
distributions) and rdsweep/options/objectives.py (the objectives), is in one place here:
- Every part returns a distribution with rdsweep.distributions.Distribution's methods, a pytree
  (it leaves `apply` and jit: rdsweep.evaluate): log_prob(value (..., *batch, *event)) ->
  (..., *batch), finite, in nats; sample_and_log_prob(key, n) -> samples (n, *batch, *event)
  and their log_prob, (n, *batch); sample(key, n); enumerate_support() -> None, or all K values
  (K, *batch, *event) with their log-probabilities (K, *batch), summing to one.
- encoder: x (B, *image) -> batch (B,), event (latent_dim,); its log_prob broadcasts a value
  against its batch (a VampPrior evaluates every z against every pseudo-input's posterior).
- decoder: z (B, latent_dim) -> batch (B,), event image_shape; samples in {0, 1}.
- marginal: __call__(encoder) -> batch (), event (latent_dim,); sampled to generate images.
- objective: a pytree whose leaves include its knob (its config's KNOB, the key a sweep varies);
  __call__(rate, distortion, step) -> a finite scalar loss.
- The composed model trains two steps under jit with a finite loss, every parameter moved, and a
  grid of two runs (differing in the grid scalars: seed and knob) ends as the two runs trained
  one by one (rdsweep.experiment.run_grid's path: one optimiser, grid_batching "auto").
Where a family has a closed-form density (Gaussian, Bernoulli, categorical, their mixtures),
log_prob is checked against scipy.stats.

Compiling dominates the time, so the options are packed into few models (each option in one,
with what it requires), and each model compiles its checks once.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra.utils import instantiate
from scipy import special, stats

from rdsweep import experiment, identity, registry
from rdsweep.data import prepare_batch
from rdsweep.distributions import Bernoulli, Categorical, DiagGaussian, Mixture
from rdsweep.train import (create_state, make_optimizer, make_train_chunk, make_train_step,
                           stack, unstack)

CHECKED = ("encoder", "decoder", "marginal", "objective")
INTERFACE = ("log_prob", "sample_and_log_prob", "sample", "enumerate_support")
# Small shapes; a model that requires other data (data=toy) keeps that data's own.
SMALL_DATA = ["data=synthetic", "data.image_shape=[8,8,1]", "data.train_examples=16",
              "data.test_examples=4"]
SMALL = ["latent_dim=3", "train.batch_size=4"]
# Tiny networks by (group, option), keys relative to where the option sits (encoder,
# encoder.base, ...). An option not listed is checked at its default sizes.
TINY = {("encoder", "mlp"): ["hidden=[8]"], ("decoder", "mlp"): ["hidden=[8]"],
        ("encoder", "gated_mlp"): ["hidden=[8]"], ("decoder", "gated_mlp"): ["hidden=[8]"],
        ("encoder", "conv"): ["channels=[2,2,2,2,4]"],
        ("decoder", "conv"): ["channels=[2,2,2,2,2,2]"],
        ("encoder", "iaf"): ["steps=2", "hidden=[6,6]"],
        ("marginal", "maf"): ["steps=2", "hidden=[6,6]"],
        ("decoder", "pixelcnn"): ["depth=4", "resnets_per_block=1"],
        ("marginal", "mixture"): ["components=4"], ("marginal", "vamp"): ["pseudo_inputs=6"]}
# Unlike latent_dim (3), components (4) and pseudo-inputs (6): a confused axis changes a shape.
BATCH, SAMPLES = 2, 5
STEPS = 2
PARAMETER_NOISE = 0.3  # off the initial parameters, where the parts are checked
GRID = ((0, 0.5), (1, 2.0))  # (seed, knob) of the grid's two runs
# Compiling is most of this file's time, and XLA:CPU's optimisations (LLVM's, fusion emitters)
# most of that for these tiny programs; they change none of the properties checked.
QUICK = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def choices(group, name, nested=None):
    """{group or group/sub: option} of one option: it, its nested choice, and what they require
    (the first option allowed), transitively."""
    chosen = {group: name}
    if nested:
        chosen[f"{group}/{nested[0]}"] = nested[1]
    pending = [(group, n) for n in chosen.values()]
    while pending:
        g, n = pending.pop()
        for other, allowed in registry.options()[g][n].requires.items():
            if other not in chosen:
                chosen[other] = allowed[0]
                pending.append((other, allowed[0]))
            assert chosen[other] in allowed, f"{g}={n} needs {other}={allowed}: {chosen}"
    return chosen


def every_option():
    """choices() of every option of the CHECKED groups, and of each of its nested choices."""
    for group in CHECKED:
        for name, opt in registry.options()[group].items():
            nested = [(sub, inner) for sub, names in opt.subgroups.items() for inner in names]
            yield from (choices(group, name, sub) for sub in nested or [None])


def agree(model, option):
    """Whether an option's choices can join a model's: the same data (an option that needs
    other data joins only models of that data), no group chosen twice, requirements met."""
    merged = {**model, **option}
    return (model.get("data") == option.get("data")
            and all(model.get(k, v) == v for k, v in option.items())
            and all(merged[other] in allowed for g, n in merged.items()
                    for other, allowed in registry.options()[g.split("/")[0]][n].requires.items()))


def pack(options):
    """Few models that hold every option: each joins the first model it agrees with."""
    models = []
    for option in options:
        model = next((m for m in models if agree(m, option)), None)
        if model is None:
            models.append(dict(option))
        else:
            model.update(option)
    return models


MODELS = pack(every_option())


def tiny_overrides(cfg):
    """TINY's overrides of every part (and nested part) that cfg composes."""
    out = []
    for group in ("encoder", "decoder", "marginal"):
        subgroups = registry.chosen(cfg, group).subgroups
        nodes = [(group, cfg[group])] + [(f"{group}.{s}", cfg[group][s]) for s in subgroups]
        for key, node in nodes:
            opt = registry.chosen({group: node}, group)
            out += [f"{key}.{o}" for o in TINY.get((group, opt.name), [])]
    return out


def grid_configs(make_cfg, chosen):
    """The two configs of a model's grid: its choices at small sizes, each with a GRID pair."""
    overrides = [f"{k}={v}" for k, v in chosen.items()] + SMALL
    overrides += [] if "data" in chosen else SMALL_DATA
    overrides += tiny_overrides(make_cfg(*overrides))
    knob = identity.knob(make_cfg(*overrides).objective)
    return [make_cfg(*overrides, f"seed={seed}", f"objective.{knob}={value}")
            for seed, value in GRID]


def _draws(d, key, value):
    """Every array of d that the contract checks; value None: d's own samples."""
    samples, log_s = d.sample_and_log_prob(key, SAMPLES)
    value = samples if value is None else value
    support = d.enumerate_support()
    return {"samples": samples, "log_s": log_s, "log_prob_of_samples": d.log_prob(samples),
            "sample": d.sample(key, SAMPLES), "value": value, "log_p": d.log_prob(value),
            "support": support,
            "log_prob_of_support": None if support is None else d.log_prob(support[0])}


class Model:
    """A model's two runs: their configs, data, initial states, parts and trainings, each made
    once."""

    def __init__(self, cfgs):
        self.cfgs = cfgs
        cfg = cfgs[0]
        train, _ = instantiate(cfg.data).load()
        self.images = jax.device_put(train.images)
        self.weights = None if train.weights is None else jax.device_put(train.weights)
        model = experiment.build_model(cfg)
        example = jnp.zeros((1,) + train.images.shape[1:], jnp.float32)
        # As run_grid makes them: each run's seed and objective, and one optimiser (the runs
        # share train.*); compiled once for both runs, as eager initialisation is slow.
        optimizer = make_optimizer(cfg.train, len(train.images))
        init = jax.jit(lambda objective, key: create_state(model, optimizer, objective, example,
                                                           key), compiler_options=QUICK)
        self.initial = [init(instantiate(c.objective),
                             jax.random.split(jax.random.PRNGKey(c.seed))[0]) for c in cfgs]
        self.step = make_train_step(cfg.train.batch_size, cfg.data.binarization)

    @functools.cached_property
    def parts(self):
        """{part: (distribution, its _draws)} at BATCH examples x (decoder at z ~ e(z|x)), from
        one compiled call, as jit returns them. The parameters are the first run's initial ones
        moved by noise: fresh flows are the identity and fresh weights uniform, which would
        hide a wrong inverse or a misweighted mixture."""
        state = self.initial[0]
        rng = np.random.default_rng(0)
        params = jax.tree_util.tree_map(
            lambda p: p + PARAMETER_NOISE * rng.normal(size=p.shape).astype(p.dtype),
            state.params)
        x = prepare_batch(self.images[:BATCH], jax.random.PRNGKey(1),
                          self.cfgs[0].data.binarization)
        k_z, k_e, k_m, k_d = jax.random.split(jax.random.PRNGKey(2), 4)

        def parts(vae):
            e, m = vae.latent_distributions(x)
            return e, m, vae.decoder(e.sample(k_z, 1)[0])

        apply = lambda params: state.apply_fn({"params": params}, method=parts)
        jax.eval_shape(lambda params: [check_interface(d) for d in apply(params)], params)

        def draws(params):
            e, m, d = apply(params)
            out = {"encoder": (e, _draws(e, k_e, None))}
            z = out["encoder"][1]["samples"]  # (SAMPLES, BATCH, L): as the VAE draws them
            out["encoder"][1]["pairs"] = e.log_prob(z[0][:, None, :])  # each z, each x
            out["marginal"] = (m, _draws(m, k_m, z))
            out["decoder"] = (d, _draws(d, k_d, x))
            return out

        out = jax.jit(draws, compiler_options=QUICK)(params)
        return {part: (d, jax.tree_util.tree_map(np.asarray, arrays))
                for part, (d, arrays) in out.items()}

    @functools.cached_property
    def one_by_one(self):
        """Each run's (state, metrics (STEPS, 1)) trained alone: a stack of one, as `run`."""
        chunk = make_train_chunk(self.step, "map", QUICK)
        return [chunk(stack([s]), self.images, STEPS, self.weights) for s in self.initial]

    @functools.cached_property
    def grid(self):
        """(state, metrics (STEPS, 2)) of both runs trained as one program."""
        states = stack(self.initial)
        batching = experiment.grid_batching(self.cfgs[0].train.grid_batching, self.step, states,
                                            self.images, self.weights)
        chunk = make_train_chunk(self.step, batching, QUICK)
        return chunk(states, self.images, STEPS, self.weights)


@pytest.fixture(scope="module")
def model_of(make_cfg):
    """A model's choices -> its Model, made once."""
    made = {}

    def get(chosen):
        key = tuple(sorted(chosen.items()))
        if key not in made:
            made[key] = Model(grid_configs(make_cfg, chosen))
        return made[key]

    return get


def check_interface(d):
    """d has the distribution methods and is a pytree."""
    name = type(d).__name__
    missing = [m for m in INTERFACE if not callable(getattr(d, m, None))]
    assert not missing, f"{name} lacks {', '.join(missing)}"
    assert not jax.tree_util.all_leaves([d]), f"{name} is no pytree: it cannot leave jit"


def reference_log_prob(d, value):
    """log d(value) from scipy (float64) where d's family has a closed form, else None."""
    f64 = lambda a: np.asarray(a, np.float64)
    if isinstance(d, DiagGaussian):
        return stats.norm.logpdf(value, f64(d.loc), f64(d.scale)).sum(-1)
    if isinstance(d, Bernoulli):
        p = special.expit(f64(d.logits))
        return stats.bernoulli.logpmf(value, p).sum(tuple(range(-d.event_ndims, 0)))
    if isinstance(d, Categorical):  # one-hot values: a multinomial of one draw
        return stats.multinomial.logpmf(value, 1, special.softmax(f64(d.logits), -1))
    if isinstance(d, Mixture):
        parts = reference_log_prob(d.components, value[..., None, :])
        log_w = special.log_softmax(f64(d.logits))
        return None if parts is None else special.logsumexp(log_w + parts, -1)
    return None


def check_draws(d, out, batch, event):
    """The shapes and log-densities of d's _draws `out` at these batch and event shapes."""
    name = type(d).__name__
    samples, log_s = out["samples"], out["log_s"]
    assert samples.shape == (SAMPLES, *batch, *event), (name, samples.shape)
    assert log_s.shape == (SAMPLES, *batch), (name, log_s.shape)
    assert np.all(np.isfinite(log_s)), name
    np.testing.assert_allclose(out["log_prob_of_samples"], log_s, rtol=1e-5, atol=1e-5,
                               err_msg=name)
    assert out["sample"].shape == samples.shape, name

    value, log_p = out["value"], out["log_p"]
    lead = value.ndim - len(batch) - len(event)
    assert value.shape[lead:] == (*batch, *event), (name, value.shape)
    assert log_p.shape == value.shape[:lead + len(batch)], (name, log_p.shape)
    assert np.all(np.isfinite(log_p)), name
    reference = reference_log_prob(d, value.astype(np.float64))
    if reference is not None:
        np.testing.assert_allclose(log_p, reference, rtol=1e-5, atol=1e-5, err_msg=name)

    if out["support"] is not None:
        values, log_v = out["support"]
        assert values.shape[1:] == (*batch, *event) and log_v.shape == values.shape[:1] + batch
        np.testing.assert_allclose(special.logsumexp(log_v.astype(np.float64), 0), 0,
                                   atol=1e-5, err_msg=name)
        np.testing.assert_allclose(out["log_prob_of_support"], log_v, rtol=1e-5, atol=1e-5,
                                   err_msg=name)


def _ids(chosen):
    return ",".join(f"{k}={v}" for k, v in chosen.items())


def test_every_option_is_in_a_model():
    for option in every_option():
        assert any(all(m.get(k) == v for k, v in option.items()) for m in MODELS), option


@pytest.mark.parametrize("chosen", MODELS, ids=_ids)
def test_parts_give_distributions_of_the_documented_shapes(chosen, model_of):
    model = model_of(chosen)
    for cfg in model.cfgs:
        registry.check(cfg)  # as the rdsweep command checks a config before building it
    cfg = model.cfgs[0]
    latent = (cfg.latent_dim,)
    e, out_e = model.parts["encoder"]
    check_draws(e, out_e, (BATCH,), latent)
    assert out_e["pairs"].shape == (BATCH, BATCH)
    np.testing.assert_allclose(np.diagonal(out_e["pairs"]), out_e["log_p"][0], rtol=1e-5,
                               atol=1e-5)
    check_draws(*model.parts["marginal"], (), latent)
    d, out_d = model.parts["decoder"]
    check_draws(d, out_d, (BATCH,), tuple(cfg.data.image_shape))
    assert set(np.unique(out_d["samples"])) <= {0.0, 1.0}


@pytest.mark.parametrize("chosen", MODELS, ids=_ids)
def test_model_trains_two_steps_under_jit(chosen, model_of):
    model = model_of(chosen)
    for initial, (state, metrics) in zip(model.initial, model.one_by_one):
        assert int(unstack(state, 0).step) == STEPS
        for name, values in metrics.items():
            assert values.shape == (STEPS, 1) and np.all(np.isfinite(values)), (name, values)
        before = jax.tree_util.tree_flatten_with_path(initial.params)[0]
        after = jax.tree_util.tree_leaves(unstack(state, 0).params)
        still = [jax.tree_util.keystr(path) for (path, a), b in zip(before, after)
                 if np.array_equal(a, b)]
        assert not still, f"parameters that training did not move: {still}"


@pytest.mark.parametrize("chosen", MODELS, ids=_ids)
def test_a_grid_of_two_ends_as_the_two_trained_one_by_one(chosen, model_of):
    model = model_of(chosen)
    assert len({experiment.grid_key(c) for c in model.cfgs}) == 1  # the launcher groups them
    grid, grid_metrics = model.grid
    for k, (state, metrics) in enumerate(model.one_by_one):
        for name, values in metrics.items():
            np.testing.assert_allclose(grid_metrics[name][:, k], values[:, 0], rtol=1e-5,
                                       err_msg=name)
        jax.tree_util.tree_map(
            lambda g, s: np.testing.assert_allclose(g, s, rtol=1e-4, atol=1e-6),
            unstack(grid, k).params, unstack(state, 0).params)
    assert not np.allclose(grid_metrics["loss"][:, 0], grid_metrics["loss"][:, 1])  # two runs


@pytest.mark.parametrize("name", list(registry.options()["objective"]))
def test_objective_is_a_pytree_of_its_knob_with_a_finite_scalar_loss(name, make_cfg):
    cfg = make_cfg(f"objective={name}")
    knob = registry.options()["objective"][name].node.KNOB
    assert knob in cfg.objective, f"objective={name}: KNOB={knob!r} is none of its keys"
    objective = instantiate(cfg.objective)
    leaves_at = lambda v: jax.tree_util.tree_map(lambda leaf: jnp.float32(v), objective)
    assert getattr(leaves_at(7.0), knob) == 7.0, (
        f"objective={name}: {knob} is no leaf, so a grid over it cannot be one program")
    loss = jax.jit(lambda o: o(jnp.float32(3.0), jnp.float32(10.0), jnp.int32(5)))
    losses = [loss(leaves_at(v)) for v in (0.5, 2.0)]
    assert all(l.shape == () and np.isfinite(l) for l in losses), losses
    assert losses[0] != losses[1], f"objective={name}: the loss ignores {knob}"


class PlainGaussian:
    """N(0, I) as a plain class with log_prob only: all that building and training ask."""

    def log_prob(self, z):
        return jax.scipy.stats.norm.logpdf(z).sum(-1)


class PlainMarginal:
    """A marginal option whose distribution is a PlainGaussian."""

    def __init__(self, latent_dim):
        self.latent_dim = latent_dim

    def __call__(self, encoder=None):
        return PlainGaussian()


def test_the_contract_rejects_a_marginal_without_sample_and_log_prob(make_cfg):
    cfg = make_cfg(*SMALL, *SMALL_DATA, "encoder.hidden=[8]", "decoder.hidden=[8]",
                   f"marginal._target_={__name__}.PlainMarginal")
    model = Model([cfg])  # it builds and initialises: the training step's forward pass runs
    with pytest.raises(AssertionError, match="PlainGaussian lacks sample_and_log_prob"):
        model.parts
