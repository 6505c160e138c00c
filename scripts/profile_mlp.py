"""Where the mlp's training step goes, rdsweep against PyTorch (docs/benchmarks.md, analysis):
in one process, alternating, images/s at batch 64 of
  - the whole training step (rdsweep's compiled scan; PyTorch's reference loop, fused Adam);
  - the two MLPs alone, forward + backward (784-512-512-128 and 64-512-512-784, ReLU, the
    gradients of every weight and bias), no sampling, log-probs or optimiser.
    TFDS_DATA_DIR=../shared/tfds python scripts/profile_mlp.py  # needs torch (the bench extra)
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from rdsweep.bench.measure import compose_config, training_rate
from rdsweep.bench.torch_reference import train_images_per_s
from rdsweep.options.tfds_images import load_split

B, STEPS, ROUNDS = 64, 200, 3
WIDTHS = [(784, 512, 512, 128), (64, 512, 512, 784)]  # encoder (loc, scale), decoder


def jax_networks_rate() -> float:
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

    jax.block_until_ready(many(params))
    t0 = time.perf_counter()
    jax.block_until_ready(many(params))
    return STEPS * B / (time.perf_counter() - t0)


def torch_networks_rate() -> float:
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(*[m for a, b in zip(w, w[1:]) for m in
                                  (torch.nn.Linear(a, b), torch.nn.ReLU())][:-1]) for w in WIDTHS]
    xs = [torch.randn(B, w[0]) for w in WIDTHS]

    def run():
        for _ in range(STEPS):
            for net in nets:
                net.zero_grad()
            sum((net(x) ** 2).sum() for net, x in zip(nets, xs)).backward()

    run()
    t0 = time.perf_counter()
    run()
    return STEPS * B / (time.perf_counter() - t0)


def main():
    cfg = compose_config([f"train.batch_size={B}"])
    images = load_split(cfg.data.train_split, cfg.data)
    device_images = jax.device_put(images)
    rates = {k: [] for k in ("rdsweep step", "PyTorch step", "rdsweep networks",
                             "PyTorch networks")}
    for _ in range(ROUNDS):
        rates["rdsweep step"].append(training_rate(cfg, device_images, STEPS, 1))
        rates["PyTorch step"].append(train_images_per_s("mlp", images, B, STEPS, 1, STEPS))
        rates["rdsweep networks"].append(jax_networks_rate())
        rates["PyTorch networks"].append(torch_networks_rate())
    med = {k: statistics.median(v) for k, v in rates.items()}
    for k, v in med.items():
        print(f"{k}: median {v:,.0f} images/s (rounds: {', '.join(f'{r:,.0f}' for r in rates[k])})")
    print(f"rdsweep / PyTorch: step {med['rdsweep step'] / med['PyTorch step']:.2f}x, "
          f"networks {med['rdsweep networks'] / med['PyTorch networks']:.2f}x")
    for who in ("rdsweep", "PyTorch"):
        print(f"{who}: the networks' forward + backward are "
              f"{med[f'{who} step'] / med[f'{who} networks']:.0%} of a step")


if __name__ == "__main__":
    main()
