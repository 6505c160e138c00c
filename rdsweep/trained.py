"""A trained run, loaded from its run folder: `load_run(run_dir)`.

The model is rebuilt from the run's own config (metrics.json's) with `experiment.build_model`,
and the parameters of its final checkpoint are restored into that structure with orbax, on the
CPU whatever device wrote them. Nothing in the folder is written. Images x are float32 in
{0, 1}, shape (B, *image); latents z are (B, latent_dim); log-densities and bounds are in nats
per example.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rdsweep.data import prepare_batch
from rdsweep.distributions import Distribution
from rdsweep.evaluate import evaluate_examples
from rdsweep.experiment import build_model
from rdsweep.checkpoints import hash_problem
from rdsweep.lifecycle import Status, error_line
from rdsweep.models import VAE
from rdsweep.option import DataError
from rdsweep.outputs import CHECKPOINTS, METRICS, kept_steps, load_metrics

HYDRA = ".hydra"


@dataclass(frozen=True)
class TrainedRun:
    """A completed run's model and parameters (see the module docstring for shapes and units)."""

    run_dir: str
    config: DictConfig  # the run's resolved job config, as metrics.json records it
    metrics: Dict[str, Any]  # the run's metrics.json
    step: int  # the step of the restored checkpoint (the run's last)
    model: VAE
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
        return _sample(self.apply_fn, self.params, key, n)

    def reconstruct(self, x: jax.Array, key: jax.Array) -> jax.Array:
        """Reconstructions (B, *image) of x: z ~ e(z|x), x' ~ d(x|z)."""
        return _reconstruct(self.apply_fn, self.params, x, key)

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


@functools.partial(jax.jit, static_argnums=(0, 3))
def _sample(apply_fn, params, key: jax.Array, n: int) -> jax.Array:
    def draw(vae: VAE) -> jax.Array:
        k_z, k_x = jax.random.split(key)
        return vae.decoder(vae.marginal(vae.encoder).sample(k_z, n)).sample(k_x, 1)[0]

    return apply_fn({"params": params}, method=draw)


@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(apply_fn, params, x: jax.Array, key: jax.Array) -> jax.Array:
    def draw(vae: VAE) -> jax.Array:
        k_z, k_x = jax.random.split(key)
        return vae.decoder(vae.encoder(x).sample(k_z, 1)[0]).sample(k_x, 1)[0]

    return apply_fn({"params": params}, method=draw)


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
        if os.path.isdir(os.path.join(run_dir, HYDRA)):
            raise _error(run_dir, f"an unfinished run (no {METRICS} yet: still training, or "
                                  "killed); load it once it has finished, or resume it")
        raise _error(run_dir, f"not a run folder (no {METRICS}, no {HYDRA}/); give the folder "
                              "of one run, e.g. a sweep's job folder")
    status = metrics.get("status")
    if status != Status.COMPLETED:
        detail = metrics.get("error") or f"at step {metrics.get('steps')}"
        raise _error(run_dir, f"the run is {status} ({detail}), not completed: it has no "
                              "trained model to load")
    return metrics


def _restore(directory: str, run_dir: str, metrics: Dict[str, Any], params: Any) -> Any:
    """The parameters of the checkpoint at `directory`, restored into the structure `params`
    (shape-dtype structs) on the CPU, after checking its files and that it is of the run's
    config."""
    name = f"{CHECKPOINTS}/{os.path.basename(directory)}"
    problem = hash_problem(directory)
    if problem is not None:
        raise _error(run_dir, f"{name} is damaged ({problem}); train the run again")
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    item = {"params": jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=cpu), params)}
    try:
        with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as checkpointer:
            recorded = checkpointer.restore(os.path.join(directory, "log")).get("config_hash")
        if recorded == metrics.get("config_hash"):
            with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as checkpointer:
                return checkpointer.restore(os.path.join(directory, "state"),
                                            args=ocp.args.PyTreeRestore(
                    item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                    partial_restore=True))["params"]
    except Exception as e:  # orbax and tensorstore raise many kinds on damaged files
        raise _error(run_dir, f"{name} cannot be restored into the model of the run's config "
                              f"({error_line(e)[:200]}); train the run again") from None
    raise _error(run_dir, f"{name} belongs to another config (config_hash {recorded}; "
                          f"{METRICS}: {metrics.get('config_hash')}): the folder mixes two "
                          "runs; train this config again into a new folder")


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
    directory = os.path.join(os.path.abspath(run_dir), CHECKPOINTS, str(step))
    if not os.path.isdir(directory):
        if step != final:
            raise _error(run_dir, f"no checkpoint at step {step}; the kept ones are at steps "
                                  f"{', '.join(map(str, kept_steps(run_dir)))}")
        raise _error(run_dir, f"no finished checkpoint ({CHECKPOINTS}/{step}/, the last step, is "
                              "missing); train the run again to get its model")
    model = build_model(config)
    example = jnp.zeros((1, *config.data.image_shape), jnp.float32)
    key = jax.random.PRNGKey(0)
    params = jax.eval_shape(lambda: model.init(key, example, key)["params"])
    return TrainedRun(os.path.abspath(run_dir), config, metrics, step, model,
                      _restore(directory, run_dir, metrics, params))
