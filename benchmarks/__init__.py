"""rdsweep's benchmark suite: one run measures every figure and prints one Markdown table.

    TFDS_DATA_DIR=../shared/tfds .venv/bin/python -m benchmarks --write docs/benchmarks.md

It lives beside the package, not in it: it runs from the checkout's root and is not installed.
PyTorch (the reference of the training rows) is the `bench` extra: `bash scripts/setup.sh
test,bench`. Without it the training rows show rdsweep alone, for the default model (the MLP):
the other models are named by benchmarks.torch_reference, which imports torch.

Sections (`--only` takes section names and model names, comma-separated; a model name restricts
the training and startup rows to it):
  matmul    f32 matmul GFLOP/s, n = 512, 1024, 2048; the best is the reference of every
            "fraction of matmul" below, so it is always measured.
  training  images/s at --batch-size for each model of benchmarks.torch_reference.REFERENCES:
            rdsweep (one compiled scan of --steps steps, fewer for a slow model so that a call
            takes about 4 s) and PyTorch (its loop of as many steps, fused Adam, torch's
            default thread count, in the fastest of its variants: eager or torch.compile'd
            (default and max-autotune-no-cudagraphs modes), NCHW or channels-last for a model
            with convolutions; each tried in short side-by-side calls, the table lists them and
            names the one used), their ratio (target: mlp >= 1.5, conv* and pixelcnn* >= 1.0),
            and rdsweep's achieved GFLOP/s (XLA cost analysis of one step) as a fraction of the
            best matmul (target: mlp >= 80%, conv* >= 60%).
  startup   seconds from launching a process (`python -m benchmarks --first-step`: load data,
            build the model, compile and run one 10-step scanned chunk) to that chunk done
            (mlp, conv_small), with a cold then a warm persistent compilation cache (target:
            warm at least 2x sooner).
  iwae      evaluate() of the mlp on test examples for k = 1, 100, 1000 in example-samples/s,
            and at k = 1000 the achieved GFLOP/s (XLA cost analysis) as a fraction of the best
            matmul (target >= 50%).
  priors    training images/s of `experiment=vampprior_mnist` (the VampPrior paper's one-layer
            VAE, batch 100) with each of its three priors, N(0, I), a 500-component mixture
            and the VampPrior, timed side by side, and the seconds of one 50,000-image epoch;
            the IWAE evaluation of each (example-samples/s at k = 1000 on 1000 test images)
            and the minutes that gives k = 5000 on the 10,000 test images.
  memory    peak RSS (MiB) of a default run, `python -m rdsweep train.steps=500`.
  scaling   mlp training images/s against the batch size (32 to 1024), and against the
            number K = 1, 2, 4, 8 of models trained as one grid (total and per model), each K
            batched both ways (train.grid_batching=map and vmap; target: what `auto` picks is
            the faster), at --steps x --batch-size images per timed call.
  layers    the profiles of `conv_small` and `pixelcnn_small`: forward + backward (and forward
            alone) milliseconds of each conv layer of conv_small, and of each kind of layer of
            the PixelCNN network at each side (times how often the network runs it), at batch
            --batch-size, in rdsweep (rdsweep.layers' and rdsweep.options.pixelcnn's modules)
            and in PyTorch (benchmarks.torch_reference's, eager, NCHW: not the training rows'
            picked variant), their ratio, and the layers' sum
            against one training step of the whole model: where a model's time goes.
  grid      wall time of 8 short mlp runs (seeds 0-7, 300 steps, short evaluation) as one
            `hydra/launcher=grid` process against 8 processes one after another, start-up,
            compilation and data loading included (target: ratio <= 0.6).
  main      the README's main job, `rdsweep` (the default model: 6000 steps, then its
            evaluation), from launch to metrics.json, median of 3 launches, each with a fresh
            compilation cache (target: <= 60 s).

Example: `python -m benchmarks --only training,conv_small --repeats 3`.

Timings are the median of --repeats timed calls after one untimed warm-up call (which
compiles). Process timings (startup, grid, main) are the median of --repeats launches, each
arm with a fresh compilation cache; no warm-up launch: the data cache (~/.cache/rdsweep) is
filled before them, and this process has read the same Python modules. Peak RSS is one run.
`--quick` is a smoke test of every row (tiny sizes, two models, one repeat): its figures are
not benchmarks. Progress goes to stderr; stdout is the Markdown document that --write saves.

Modules: `measure` (what a row measures: timings, FLOP counts, processes), `sections` (the rows
of each section but `layers`), `layer_profile` (the `layers` section), `cli` (the command and
its document), `torch_reference` (the PyTorch models); `profile_mlp`, a script of its own,
splits the mlp's training step against PyTorch's.
"""
