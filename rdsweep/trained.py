"""A trained run, loaded from its run folder: `load_run(run_dir)`.

The model is rebuilt from the run's own config (metrics.json's) with `experiment.build_model`,
and the parameters of its final checkpoint are restored into that structure
(`checkpoints.restore_params`), on the CPU whatever device wrote them; its samples and
reconstructions are `models.sample` and `models.reconstruct`. Nothing in the folder is written.
Images x are float32 in {0, 1}, shape (B, *image); latents z are (B, latent_dim); log-densities
and bounds are in nats per example.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rdsweep import models
from rdsweep.checkpoints import CHECKPOINTS, kept_steps, restore_params
from rdsweep.data import prepare_batch
from rdsweep.distributions import Distribution
from rdsweep.evaluate import evaluate_examples
from rdsweep.experiment import build_model
from rdsweep.option import DataError
from rdsweep.outputs import METRICS, load_metrics
from rdsweep.run_folder import RECORD
from rdsweep.status import Status


@dataclass(frozen=True)
class TrainedRun:
    """A completed run's model and parameters (see the module docstring for shapes and units)."""

    run_dir: str
    config: DictConfig  # the run's resolved job config, as metrics.json records it
    metrics: Dict[str, Any]  # the run's metrics.json
    step: int  # the step of the restored checkpoint (the run's last)
    model: models.VAE
    params: Any

    @property
    def apply_fn(self):
        """The model's apply function, as `rdsweep.evaluate` takes it."""
        return self.model.apply

    def _apply(self, method, *args):
        return self.model.apply({"params": self.params}, *args, method=method)

    def encode(self, x: jax.Array) -> Distribution:
        """e(z|x): batch (B,), event (latent_dim,)."""
        return self._apply(lambda vae, x: vae.encoder(x), x)

    def decode(self, z: jax.Array) -> Distribution:
        """d(x|z): batch (B,), event the image shape."""
        return self._apply(lambda vae, z: vae.decoder(z), z)

    def marginal(self) -> Distribution:
        """m(z): event (latent_dim,)."""
        return self._apply(lambda vae: vae.marginal(vae.encoder))

    def sample(self, n: int, key: jax.Array) -> jax.Array:
        """n images (n, *image): z ~ m(z), x ~ d(x|z)."""
        return models.sample(self.apply_fn, self.params, key, n)

    def reconstruct(self, x: jax.Array, key: jax.Array) -> jax.Array:
        """Reconstructions (B, *image) of x: z ~ e(z|x), x' ~ d(x|z)."""
        return models.reconstruct(self.apply_fn, self.params, x, key)

    def rate_distortion(self, x: jax.Array, key: jax.Array,
                        k: Optional[int] = None) -> Dict[str, np.ndarray]:
        """rate, rate_mc, distortion, elbo and iwae of each example of x, each (B,), from k
        samples of z per example (default: the run's eval.iwae_samples), from one encoder pass
        per example, in blocks of samples so that memory stays bounded for any k."""
        images = np.asarray(np.asarray(x) * 255, np.uint8)  # {0, 1} -> {0, 255}: exact
        return evaluate_examples(self.apply_fn, self.params, images, key,
                                 k or self.config.eval.iwae_samples,
                                 self.config.eval.batch_size, "static")

    def log_likelihood(self, x: jax.Array, k: int, key: jax.Array) -> np.ndarray:
        """The importance-sampled estimate of log p(x) (B,), IWAE_k (a lower bound on average)."""
        return self.rate_distortion(x, key, k)["iwae"]

    def test_images(self, n: Optional[int] = None, key: Optional[jax.Array] = None) -> jax.Array:
        """The first n test examples (all if None) as x (n, *image) in {0, 1}; dynamically
        binarized data draws them with key (default: PRNGKey(0))."""
        images = instantiate(self.config.data).load()[1].images[:n]
        key = jax.random.PRNGKey(0) if key is None else key
        return prepare_batch(jnp.asarray(images), key, self.config.data.binarization)

    @property
    def eval_key(self) -> jax.Array:
        """The key of training's own evaluation (test: fold_in 0, train: fold_in 1)."""
        return jax.random.split(jax.random.PRNGKey(self.config.seed))[1]


def _error(run_dir: str, problem: str) -> DataError:
    return DataError(f"{run_dir}: {problem}")


def read_completed(run_dir: str) -> Dict[str, Any]:
    """metrics.json of a completed run; DataError with one line saying why not otherwise."""
    if not os.path.isdir(run_dir):
        raise _error(run_dir, "no such folder")
    metrics, problem = load_metrics(run_dir)
    if problem is not None:
        raise _error(run_dir, f"{METRICS} is unreadable ({problem}); this run cannot be loaded")
    if metrics is None:
        if os.path.isdir(os.path.join(run_dir, RECORD)):
            raise _error(run_dir, f"an unfinished run (no {METRICS} yet: still training, or "
                                  "killed); load it once it has finished, or resume it")
        raise _error(run_dir, f"not a run folder (no {METRICS}, no {RECORD}/); give the folder "
                              "of one run, e.g. a sweep's job folder")
    status = metrics.get("status")
    if status != Status.COMPLETED:
        detail = metrics.get("error") or f"at step {metrics.get('steps')}"
        raise _error(run_dir, f"the run is {status} ({detail}), not completed: it has no "
                              "trained model to load")
    return metrics


def load_run(run_dir: str, step: Optional[int] = None) -> TrainedRun:
    """The completed run in run_dir, with the parameters of its final checkpoint (or of its
    kept checkpoint at `step`, e.g. to follow the test bounds along training).

    Raises DataError (one line naming the folder and what to do) for a folder that is not a run
    folder, a run that has not completed, a run without its final checkpoint, and a checkpoint
    of another config than the run's.
    """
    metrics = read_completed(run_dir)
    config = OmegaConf.create(metrics["config"])
    final = int(metrics["steps"])
    step = final if step is None else step
    kept = kept_steps(run_dir)
    if step not in kept:
        if step != final:
            raise _error(run_dir, f"no checkpoint at step {step}; the kept ones are at steps "
                                  f"{', '.join(map(str, kept))}")
        raise _error(run_dir, f"no finished checkpoint ({CHECKPOINTS}/{step}/, the last step, is "
                              "missing); train the run again to get its model")
    model = build_model(config)
    example = jnp.zeros((1, *config.data.image_shape), jnp.float32)
    key = jax.random.PRNGKey(0)
    params = jax.eval_shape(lambda: model.init(key, example, key)["params"])
    return TrainedRun(os.path.abspath(run_dir), config, metrics, step, model,
                      restore_params(run_dir, step, params, metrics.get("config_hash"),
                                     best=OmegaConf.select(
                                         config, "train.early_stopping.patience") is not None))
