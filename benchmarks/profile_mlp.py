"""Where the mlp's training step goes, rdsweep against PyTorch (docs/benchmarks.md, analysis):
in one process, alternating (benchmarks.measure.side_by_side), images/s at batch 64 of
  - the whole training step (rdsweep's compiled scan; PyTorch's reference loop, the fastest of
    its variants, measure.fastest_torch);
  - the two MLPs alone, forward + backward (784-512-512-128 and 64-512-512-784, ReLU, the
    gradients of every weight and bias), no sampling, log-probs or optimiser; PyTorch eager.
    TFDS_DATA_DIR=../shared/tfds python -m benchmarks.profile_mlp  # needs torch (the bench extra)
"""

import jax
import jax.numpy as jnp
import torch

from benchmarks.measure import compose_config, fastest_torch, side_by_side, training_call
from rdsweep.options.tfds_images import load_split

B, STEPS, ROUNDS = 64, 200, 5
WIDTHS = [(784, 512, 512, 128), (64, 512, 512, 784)]  # encoder (loc, scale), decoder


def jax_networks_call():
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 16))
    params = [[(jax.random.normal(next(keys), (a, b)) * a ** -0.5, jnp.zeros(b))
               for a, b in zip(w, w[1:])] for w in WIDTHS]
    xs = [jax.random.normal(next(keys), (B, w[0])) for w in WIDTHS]

    def loss(params):
        total = 0.0
        for layers, h in zip(params, xs):
            for i, (w, b) in enumerate(layers):
                h = h @ w + b
                h = jax.nn.relu(h) if i < len(layers) - 1 else h
            total += jnp.sum(h ** 2)
        return total

    @jax.jit
    def many(params):
        def body(p, _):
            return jax.tree_util.tree_map(lambda a, g: a - 1e-9 * g, p, jax.grad(loss)(p)), None
        return jax.lax.scan(body, params, None, length=STEPS)[0]

    return lambda: jax.block_until_ready(many(params))


def torch_networks_call():
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(*[m for a, b in zip(w, w[1:]) for m in
                                  (torch.nn.Linear(a, b), torch.nn.ReLU())][:-1]) for w in WIDTHS]
    xs = [torch.randn(B, w[0]) for w in WIDTHS]

    def run():
        for _ in range(STEPS):
            for net in nets:
                net.zero_grad()
            sum((net(x) ** 2).sum() for net, x in zip(nets, xs)).backward()

    return run


def main():
    cfg = compose_config([f"train.batch_size={B}"])
    images = load_split(cfg.data.train_split, cfg.data)
    variant, torch_step, _ = fastest_torch("mlp", images, B, STEPS, ROUNDS)
    print(f"PyTorch step: {variant}, fused Adam")
    seconds = side_by_side({"rdsweep step": training_call(cfg, jax.device_put(images), STEPS),
                            "PyTorch step": torch_step,
                            "rdsweep networks": jax_networks_call(),
                            "PyTorch networks": torch_networks_call()}, ROUNDS)
    med = {k: STEPS * B / v for k, v in seconds.items()}
    for k, v in med.items():
        print(f"{k}: {v:,.0f} images/s (median of {ROUNDS} rounds)")
    print(f"rdsweep / PyTorch: step {med['rdsweep step'] / med['PyTorch step']:.2f}x, "
          f"networks {med['rdsweep networks'] / med['PyTorch networks']:.2f}x")
    for who in ("rdsweep", "PyTorch"):
        print(f"{who}: the networks' forward + backward are "
              f"{med[f'{who} step'] / med[f'{who} networks']:.0%} of a step")


if __name__ == "__main__":
    main()
