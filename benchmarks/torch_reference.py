"""A PyTorch reference for rdsweep's speed benchmark: rdsweep's networks, trained the usual way.

`REFERENCES` maps a short name to the rdsweep Hydra overrides that build a model and a builder
of a PyTorch VAE with the identical architecture: the same layers, widths, kernels, strides and
gates, so the same parameter count, tensor by tensor (initialisation aside: torch's defaults,
except where the start matters, see below). `trainer` trains the way a well-written PyTorch
program does it: a per-step loop (zero_grad to None, forward, backward, fused Adam step) with no
host sync, float32, torch's default thread count, batches drawn from uint8 images already in
memory. A `Variant` says how the forward and backward run: eager or `torch.compile`d, NCHW or
channels-last; the benchmark tries several and quotes the fastest (benchmarks.measure).

PyTorch is not a dependency of rdsweep: it is the optional `bench` extra.

Conventions: images are NCHW, x (B, 1, 28, 28) float32 in {0, 1}; latents z (B, L), L = 64
(rdsweep's default latent_dim); log-densities and the loss are in nats. One training step is
rdsweep's train_step: one z ~ e(z|x) per image, loss = D + beta * R over batch means, with
R = KL(e || m) in closed form for a Gaussian posterior and N(0, I), else log e(z|x) - log m(z).

Where the computation differs from rdsweep's (same shapes, parameters and FLOPs):
- torch pads symmetrically: the 5x5 stride-2 convs pad 2 before and 2 after where XLA pads 1
  and 2, the 5x5 stride-2 transposed convs 2 and 3 where flax pads 3 and 2, and the PixelCNN's
  2x3 up-convs likewise pad their columns on the other side. Taps shift by one pixel; rows,
  hence the PixelCNN's causality, are as in rdsweep.
- stride-1 transposed convs are convs with flax's padding, which is what flax computes.
Initialisation mirrors rdsweep only where it shapes training: MADE output layers start at zero
(every flow is the identity at the start), VampPrior pseudo-inputs ~ N(0, 0.1^2) and
weight logits 0.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rdsweep.options.conv import DECODER_PRESETS, ENCODER_PRESETS
from rdsweep.options.flows import PRESETS as FLOW_PRESETS
from rdsweep.options.flows import made_masks
from rdsweep.options.marginals import VAMP_PRESETS
from rdsweep.options.pixelcnn import PRESETS as PIXELCNN_PRESETS

IMAGE = (1, 28, 28)  # C, H, W
PIXELS = math.prod(IMAGE)
LATENT_DIM = 64  # rdsweep's default latent_dim
MLP_HIDDEN = [512, 512]  # rdsweep's default encoder.hidden / decoder.hidden
FLOW_STEPS = 4  # rdsweep's default encoder.steps / marginal.steps
LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------
# Densities (nats, summed over the last axis)


def gaussian_log_prob(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(z; loc, diag(scale^2)): broadcast (..., L) -> (...)."""
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * LOG_2PI).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I): (..., L) -> (...)."""
    return (-0.5 * z ** 2 - 0.5 * LOG_2PI).sum(-1)


def kl_to_standard_normal(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, scale^2) || N(0, I)) in closed form: (B, L) -> (B,)."""
    return (0.5 * (scale ** 2 + loc ** 2 - 1.0) - scale.log()).sum(-1)


# ---------------------------------------------------------------------------------------------
# Layers


def gate(h: torch.Tensor) -> torch.Tensor:
    """(B, 2n, ...) -> (B, n, ...): first half of the channels * sigmoid(second half)."""
    a, b = h.chunk(2, dim=1)
    return a * torch.sigmoid(b)


class Gated(nn.Module):
    """h(x) = (W1 x + b1) * sigmoid(W2 x + b2) (rdsweep.layers.Gated): `layer` has 2n outputs
    (channels on axis 1), which hold W1 and W2; output n channels."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gate(self.layer(x))


def gated(layer: Callable[..., nn.Module], c_in: int, c_out: int, *args, **kwargs) -> Gated:
    """The gated `layer(c_in, 2 * c_out, *args, **kwargs)` (e.g. nn.Conv2d), c_out outputs."""
    return Gated(layer(c_in, 2 * c_out, *args, **kwargs))


def mlp(widths: List[int]) -> List[nn.Module]:
    """Linear layers widths[0] -> ... -> widths[-1], ReLU between them (rdsweep.options.mlp.MLP)."""
    layers: List[nn.Module] = []
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(c_in, c_out), nn.ReLU()]
    return layers[:-1]


# ---------------------------------------------------------------------------------------------
# Encoders: x (B, 1, 28, 28) -> (loc, scale), each (B, L)


class GaussianEncoder(nn.Module):
    """x -> body(2x - 1) (B, features) -> loc = Linear, scale = softplus(Linear), as rdsweep's
    MLPEncoder and ConvEncoder (inputs in [-1, 1], as in the paper)."""

    def __init__(self, body: nn.Module, features: int, latent_dim: int = LATENT_DIM):
        super().__init__()
        self.body = body
        self.loc = nn.Linear(features, latent_dim)
        self.scale = nn.Linear(features, latent_dim)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.body(2.0 * x - 1.0)
        return self.loc(h), F.softplus(self.scale(h))


def mlp_encoder() -> GaussianEncoder:
    """rdsweep.options.mlp.MLPEncoder: 784 -> 512 -> 512 (ReLU) -> loc, scale."""
    body = nn.Sequential(nn.Flatten(), *mlp([PIXELS, *MLP_HIDDEN]), nn.ReLU())
    return GaussianEncoder(body, MLP_HIDDEN[-1])


def conv_encoder(size: str) -> GaussianEncoder:
    """rdsweep.options.conv.ConvEncoder: gated 5x5 convs, strides 1 2 1 2 (28 -> 14 -> 7), then
    a gated 7x7 valid conv to 1x1 x c4 features -> loc, scale."""
    c = ENCODER_PRESETS[size]["channels"]
    layers: List[nn.Module] = []
    c_in = IMAGE[0]
    for width, stride in zip(c[:4], (1, 2, 1, 2)):
        layers.append(gated(nn.Conv2d, c_in, width, 5, stride, padding=2))
        c_in = width
    layers += [gated(nn.Conv2d, c_in, c[4], 7), nn.Flatten()]
    return GaussianEncoder(nn.Sequential(*layers), c[4])


# ---------------------------------------------------------------------------------------------
# Decoders: (z (B, L), x (B, 1, 28, 28)) -> Bernoulli logits (B, 1, 28, 28)


class FeedForwardDecoder(nn.Module):
    """z -> net(z) reshaped to logits; x is not read (every pixel is independent given z)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *IMAGE)


def mlp_decoder() -> FeedForwardDecoder:
    """rdsweep.options.mlp.MLPDecoder: L -> 512 -> 512 -> 784 logits."""
    return FeedForwardDecoder(nn.Sequential(*mlp([LATENT_DIM, *MLP_HIDDEN, PIXELS])))


def conv_decoder(size: str) -> FeedForwardDecoder:
    """rdsweep.options.conv.ConvDecoder: z as a 1x1 map -> gated deconv 7x7 valid [7] - 5x5 -
    5x5 s2 [14] - 5x5 - 5x5 s2 [28] - 4x4 -> linear 5x5 conv to one logit per pixel. The
    stride-1 deconvs are convs ("same" padding; the even 4x4 kernel padded 2 before and 1 after,
    as in flax)."""
    c = DECODER_PRESETS[size]["channels"]
    up = functools.partial(nn.ConvTranspose2d, kernel_size=5, stride=2, padding=2,
                           output_padding=1)  # doubles H and W
    net = nn.Sequential(
        nn.Unflatten(1, (LATENT_DIM, 1, 1)),
        gated(nn.ConvTranspose2d, LATENT_DIM, c[0], 7),
        gated(nn.Conv2d, c[0], c[1], 5, padding="same"),
        gated(up, c[1], c[2]),
        gated(nn.Conv2d, c[2], c[3], 5, padding="same"),
        gated(up, c[3], c[4]),
        nn.ZeroPad2d((2, 1, 2, 1)),
        gated(nn.Conv2d, c[4], c[5], 4),
        nn.Conv2d(c[5], IMAGE[0], 5, padding=2))
    return FeedForwardDecoder(net)


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W): row r takes row r-1's values; the top row becomes zeros."""
    return F.pad(x[:, :, :-1], (0, 0, 1, 0))


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W): column c takes column c-1's values; the left column becomes zeros."""
    return F.pad(x[..., :-1], (1, 0))


class ShiftedConv(nn.Module):
    """rdsweep.options.pixelcnn.ShiftedConv: output (r, c) reads input rows <= r (padded kh-1 on
    top) and columns c - kw//2 .. c + kw//2, or with right=True columns <= c. (B, c_in, H, W) ->
    (B, c_out, ceil(H/stride), ceil(W/stride))."""

    def __init__(self, c_in: int, c_out: int, kernel: Tuple[int, int] = (2, 3),
                 right: bool = False, stride: int = 1):
        super().__init__()
        kh, kw = kernel
        cols = (kw - 1, 0) if right else ((kw - 1) // 2, (kw - 1) // 2)
        self.pad = (*cols, kh - 1, 0)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


# The two streams' layers, (c_in, c_out) -> module: u down-shifted 2x3, ul down-right-shifted 2x2.
U_CONV = functools.partial(ShiftedConv, kernel=(2, 3))
UL_CONV = functools.partial(ShiftedConv, kernel=(2, 2), right=True)
U_DOWN = functools.partial(ShiftedConv, kernel=(2, 3), stride=2)
UL_DOWN = functools.partial(ShiftedConv, kernel=(2, 2), right=True, stride=2)
# Up: stride-2 transposed convs; output row r reads input row r // 2 only (2x2: column c // 2).
U_UP = functools.partial(nn.ConvTranspose2d, kernel_size=(2, 3), stride=2, padding=(0, 1),
                         output_padding=(0, 1))
UL_UP = functools.partial(nn.ConvTranspose2d, kernel_size=2, stride=2)


def pair(u: nn.Module, ul: nn.Module) -> nn.ModuleList:
    """The (u stream, ul stream) layers of one position in the network."""
    return nn.ModuleList([u, ul])


class GatedResnet(nn.Module):
    """rdsweep.options.pixelcnn.GatedResnet: x + gate(conv(gate(conv(x) + 1x1(aux)))), conv a
    stream's shifted conv; x (B, d, H, W), aux (B, aux_channels, H, W) or none (aux_channels 0)."""

    def __init__(self, conv: Callable[[int, int], nn.Module], depth: int, aux_channels: int = 0):
        super().__init__()
        self.conv_in = conv(depth, 2 * depth)
        self.aux = nn.Conv2d(aux_channels, 2 * depth, 1) if aux_channels else None
        self.conv_out = gated(conv, depth, depth)

    def forward(self, x: torch.Tensor, aux: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.conv_in(x)
        if self.aux is not None:
            h = h + self.aux(aux)
        return x + self.conv_out(gate(h))


class PixelCNNNet(nn.Module):
    """rdsweep.options.pixelcnn.PixelCNNNet: (context (B, 1, H, W), x (B, 1, H, W) in {0, 1}) ->
    logits (B, 1, H, W); the logit of pixel i (raster order) reads image pixels < i only. Two
    streams, up pass at H, H/2, H/4 keeping every output, down pass back up fed those outputs."""

    def __init__(self, depth: int, resnets: int):
        super().__init__()
        d, n = depth, resnets
        self.in_u = U_CONV(1, 2 * d)
        self.in_ul_above = ShiftedConv(1, 2 * d, (1, 3))
        self.in_ul_left = ShiftedConv(1, 2 * d, (2, 1), right=True)
        self.context_u = nn.Conv2d(1, 2 * d, 1)
        self.context_ul = nn.Conv2d(1, 2 * d, 1)
        # (u, ul) resamplings into blocks 1 and 2 of each pass.
        self.downsample = nn.ModuleList(pair(gated(U_DOWN, d, d), gated(UL_DOWN, d, d))
                                        for _ in range(2))
        self.upsample = nn.ModuleList(pair(gated(U_UP, d, d), gated(UL_UP, d, d))
                                      for _ in range(2))
        # (u, ul) resnet pairs per block; ul's aux: u (up pass), concat(u, up-pass ul) (down).
        self.up_resnets = nn.ModuleList(
            nn.ModuleList(pair(GatedResnet(U_CONV, d), GatedResnet(UL_CONV, d, d))
                          for _ in range(n)) for _ in range(3))
        # Down-pass blocks after the first have one layer more (for the resampling's output).
        self.down_resnets = nn.ModuleList(
            nn.ModuleList(pair(GatedResnet(U_CONV, d, d), GatedResnet(UL_CONV, d, 2 * d))
                          for _ in range(n + (block > 0))) for block in range(3))
        self.logits = nn.Conv2d(d, 1, 1)

    def forward(self, context: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = 2.0 * x - 1.0  # pixels in [-1, 1], distinct from the shifts' zero padding
        u = gate(down_shift(self.in_u(x)) + self.context_u(context))
        ul = gate(down_shift(self.in_ul_above(x)) + right_shift(self.in_ul_left(x))
                  + self.context_ul(context))
        us, uls = [u], [ul]
        for block, resnets in enumerate(self.up_resnets):
            if block:
                down_u, down_ul = self.downsample[block - 1]
                us.append(down_u(us[-1]))
                uls.append(down_ul(uls[-1]))
            for res_u, res_ul in resnets:
                us.append(res_u(us[-1]))
                uls.append(res_ul(uls[-1], us[-1]))
        u, ul = us.pop(), uls.pop()
        for block, resnets in enumerate(self.down_resnets):
            if block:
                up_u, up_ul = self.upsample[block - 1]
                u, ul = up_u(u), up_ul(ul)
            for res_u, res_ul in resnets:
                u = res_u(u, us.pop())
                ul = res_ul(ul, torch.cat([u, uls.pop()], dim=1))
        return self.logits(ul)


class PixelCNNDecoder(nn.Module):
    """rdsweep.options.pixelcnn.PixelCNNDecoder: z -> gated Linear(H*W) -> context map
    (B, 1, H, W) -> PixelCNNNet(context, x): the logits of d(x|z), all pixels in one pass
    (teacher forcing)."""

    def __init__(self, size: str):
        super().__init__()
        self.context = gated(nn.Linear, LATENT_DIM, PIXELS)
        preset = PIXELCNN_PRESETS[size]
        self.net = PixelCNNNet(preset["depth"], preset["resnets_per_block"])

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.context(z).view(-1, *IMAGE), x)


# ---------------------------------------------------------------------------------------------
# Mean-only autoregressive flows (rdsweep.options.flows)


class MaskedLinear(nn.Linear):
    """Linear layer whose weight is multiplied by a fixed 0/1 mask, (fan_in, fan_out) as
    rdsweep.options.flows.made_masks gives it."""

    def __init__(self, mask: np.ndarray):
        super().__init__(*mask.shape)
        self.register_buffer("mask", torch.as_tensor(mask.T.copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """rdsweep.options.flows.MADE without context: z (B, D) -> mu (B, D), mu_i a function of z_{<i};
    masked hidden layers of `hidden` widths, ReLU; the output layer starts at zero (mu = 0)."""

    def __init__(self, dim: int, hidden: Tuple[int, ...]):
        super().__init__()
        masks = made_masks(dim, tuple(hidden))
        layers: List[nn.Module] = []
        for mask in masks[:-1]:
            layers += [MaskedLinear(mask), nn.ReLU()]
        out = MaskedLinear(masks[-1])
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*layers, out)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MeanOnlyFlow(nn.Module):
    """rdsweep.options.flows.MeanOnlyARFlow.forward: x (B, D) -> x + sign * mu_k(x) for each
    step k, odd steps autoregressive in the reversed order; volume preserving (log|det| = 0).
    sign +1: the IAF's sampling direction; -1: the MAF's density direction, z -> u."""

    def __init__(self, size: str, sign: float, dim: int = LATENT_DIM, steps: int = FLOW_STEPS):
        super().__init__()
        self.sign = sign
        self.mades = nn.ModuleList(MADE(dim, FLOW_PRESETS[size]["hidden"]) for _ in range(steps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, made in enumerate(self.mades):
            if k % 2:
                x = x + self.sign * made(x.flip(-1)).flip(-1)
            else:
                x = x + self.sign * made(x)
        return x


# ---------------------------------------------------------------------------------------------
# Marginals: log_prob(z (B, L), encoder) -> log m(z) (B,)


class StandardGaussian(nn.Module):
    """m(z) = N(0, I); no parameters."""

    def log_prob(self, z: torch.Tensor, encoder: nn.Module) -> torch.Tensor:
        return standard_normal_log_prob(z)


class VampPrior(nn.Module):
    """rdsweep.options.marginals.VampPrior: m(z) = sum_k softmax(logits)_k e(z | sigmoid(u_k)), the
    Gaussian encoder's posteriors of the K learned pseudo-inputs u_k (K: the size preset). The
    encoder sees them in a pass of its own, apart from the batch, as in rdsweep."""

    def __init__(self, size: str):
        super().__init__()
        k = VAMP_PRESETS[size]["pseudo_inputs"]
        self.pseudo_inputs = nn.Parameter(0.1 * torch.randn(k, *IMAGE))
        self.logits = nn.Parameter(torch.zeros(k))

    def log_prob(self, z: torch.Tensor, encoder: nn.Module) -> torch.Tensor:
        loc, scale = encoder(torch.sigmoid(self.pseudo_inputs))  # (K, L) each
        log_e = gaussian_log_prob(z[:, None], loc, scale)  # (B, K)
        return torch.logsumexp(F.log_softmax(self.logits, 0) + log_e, dim=-1)


class MAFMarginal(nn.Module):
    """rdsweep.options.flows.MAFMarginal: log m(z) = log N(u; 0, I), u = z - mu(z) per step
    (MAF)."""

    def __init__(self, size: str):
        super().__init__()
        self.flow = MeanOnlyFlow(size, sign=-1.0)

    def log_prob(self, z: torch.Tensor, encoder: nn.Module) -> torch.Tensor:
        return standard_normal_log_prob(self.flow(z))


# ---------------------------------------------------------------------------------------------
# The VAE


class VAE(nn.Module):
    """Encoder (a Gaussian e(z|x), pushed through an IAF `flow` if given), decoder, marginal.

    forward(x (B, 1, 28, 28) in {0, 1}, beta, noise) -> (loss, rate, distortion), scalars in
    nats: batch means of one z ~ e(z|x) per image, loss = distortion + beta * rate; noise (B, L):
    the N(0, I) draw behind z (None: a fresh one).
    """

    def __init__(self, encoder: GaussianEncoder, decoder: nn.Module, marginal: nn.Module,
                 flow: Optional[MeanOnlyFlow] = None):
        super().__init__()
        if flow is not None and isinstance(marginal, VampPrior):
            raise ValueError("this VampPrior needs the Gaussian posterior, not an IAF")
        self.encoder, self.decoder, self.marginal, self.flow = encoder, decoder, marginal, flow
        # As rdsweep.distributions.kl_divergence: closed form for Gaussian || N(0, I) only.
        self.analytic_kl = flow is None and isinstance(marginal, StandardGaussian)

    def forward(self, x: torch.Tensor, beta: float = 1.0, noise: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loc, scale = self.encoder(x)
        if noise is None:
            noise = torch.randn_like(loc)
        eps = loc + scale * noise
        z = eps if self.flow is None else self.flow(eps)  # IAF: log e(z|x) = log N(eps)
        distortion = F.binary_cross_entropy_with_logits(self.decoder(z, x), x,
                                                        reduction="sum") / x.shape[0]
        if self.analytic_kl:
            rate = kl_to_standard_normal(loc, scale)
        else:
            # log N(eps; loc, scale) from the noise: (eps - loc) / scale is the noise itself.
            log_e = standard_normal_log_prob(noise) - scale.log().sum(-1)
            rate = log_e - self.marginal.log_prob(z, self.encoder)
        rate = rate.mean()
        return distortion + beta * rate, rate, distortion


def mlp_vae() -> VAE:
    """rdsweep's default model: MLP encoder and decoder (784-512-512-64 both ways), N(0, I)."""
    return VAE(mlp_encoder(), mlp_decoder(), StandardGaussian())


def family_vae(code: str, size: str) -> VAE:
    """The VAE of paper family `code` (rdsweep's `family=<code>`): encoder conv ("-") or conv + IAF
    ("+"), decoder conv ("-") or PixelCNN ("+"), marginal N(0, I) ("-"), MAF ("+") or VampPrior
    ("v"); every network at `size` ("small" or "paper")."""
    iaf, autoregressive, marginal = code
    decoder = PixelCNNDecoder(size) if autoregressive == "+" else conv_decoder(size)
    marginals = {"-": StandardGaussian, "+": lambda: MAFMarginal(size),
                 "v": lambda: VampPrior(size)}
    flow = MeanOnlyFlow(size, sign=1.0) if iaf == "+" else None
    return VAE(conv_encoder(size), decoder, marginals[marginal](), flow)


class Reference(NamedTuple):
    overrides: List[str]  # rdsweep Hydra overrides that build the same model
    build: Callable[[], VAE]  # its PyTorch twin (freshly initialised)


def _family(code: str, size: str) -> Reference:
    return Reference([f"family={code}", f"size={size}"], functools.partial(family_vae, code, size))


REFERENCES = {
    "mlp": Reference(["encoder=mlp", "decoder=mlp", "marginal=gaussian"], mlp_vae),
    "conv_small": _family("---", "small"),
    "conv_paper": _family("---", "paper"),
    "pixelcnn_small": _family("-+-", "small"),
    "pixelcnn_paper": _family("-+-", "paper"),
    "conv_iaf_small": _family("+--", "small"),
    "vamp_small": _family("--v", "small"),
    "maf_small": _family("--+", "small"),
}


def build(name: str) -> VAE:
    """The PyTorch VAE of registry entry `name` (torch's global RNG initialises it)."""
    return REFERENCES[name].build()


def parameter_count(module: nn.Module) -> int:
    """Number of trainable scalars (masks and other buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------
# Training


class Variant(NamedTuple):
    """How the reference runs a model's forward and backward."""
    compile_mode: Optional[str] = None  # None: eager; else torch.compile's mode
    channels_last: bool = False  # parameters and inputs channels-last (NHWC in memory)

    def __str__(self) -> str:
        run = "eager" if self.compile_mode is None else f"torch.compile mode={self.compile_mode}"
        return run + ", channels-last" * self.channels_last


# The torch.compile modes tried (CPU: no CUDA graphs; max-autotune tunes the GEMM kernels).
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")


def convolves(name: str) -> bool:
    """Whether registry entry `name` has convolutions, whose memory format matters."""
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in build(name).modules())


def prepare(model: VAE, variant: Variant) -> Callable[..., Tuple[torch.Tensor, ...]]:
    """Sets model up as `variant` runs it (its 4-d parameters converted in place to the memory
    format) and returns its forward, which takes NCHW inputs like model's."""
    memory_format = torch.channels_last if variant.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)

    def forward(x: torch.Tensor, beta: float = 1.0, noise: Optional[torch.Tensor] = None):
        return model(x.contiguous(memory_format=memory_format), beta, noise)

    if variant.compile_mode is None:
        return forward
    # fullgraph: a graph break fails here instead of timing a half-eager model.
    return torch.compile(forward, mode=variant.compile_mode, fullgraph=True)


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """Adam at rdsweep's default lr, 1e-3. Fused: one kernel for all tensors, the same update
    (~25% more MLP steps/s on CPU than the default per-tensor loop; optax's Adam is fused by
    XLA too)."""
    return torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)


def train_step(forward: Callable[..., Tuple[torch.Tensor, ...]],
               optimizer: torch.optim.Optimizer, x: torch.Tensor,
               beta: float = 1.0) -> torch.Tensor:
    """One step on x (B, 1, 28, 28) in {0, 1} of a VAE's `forward` (the model, or `prepare`'s);
    returns the loss (nats, before the step), not synced: the loop never waits on it."""
    optimizer.zero_grad(set_to_none=True)  # backward writes fresh gradients, no zero fill
    loss, _, _ = forward(x, beta)
    loss.backward()
    optimizer.step()
    return loss.detach()


def trainer(name: str, images_uint8: np.ndarray, batch_size: int = 64, beta: float = 1.0,
            seed: int = 0, variant: Variant = Variant()) -> Tuple[VAE, Callable[[int], None]]:
    """A fresh model of registry entry `name` and `train(n)`: n training steps of it (Adam),
    run as `variant` says (torch.compile compiles at the first step).

    images_uint8: (N, 28, 28, 1), statically binarized as rdsweep stores it (0 or 255). Each step
    draws batch_size images uniformly with replacement, as rdsweep's train_step does.
    """
    torch.manual_seed(seed)
    model = build(name)
    forward = prepare(model, variant)
    optimizer = make_optimizer(model)
    images = torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2)
    images = images.contiguous()  # (N, 1, 28, 28) uint8

    def train(n: int) -> None:
        for _ in range(n):
            idx = torch.randint(images.shape[0], (batch_size,))
            train_step(forward, optimizer, images[idx].float().div_(255.0), beta)

    return model, train
