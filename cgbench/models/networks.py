"""The CycleGAN networks, as in the paper's appendix and the authors' reference code.

* :class:`ResnetGenerator` — c7s1-k, two stride-2 downsamplings, N residual blocks, two
  fractionally-strided upsamplings, c7s1-3 with tanh. Instance norm without affine parameters,
  reflection padding, no dropout.
* :class:`PatchDiscriminator` — the 70x70 PatchGAN: C64 (no norm) - C128 - C256 - C512 (stride 1)
  - 1 channel, LeakyReLU 0.2.
* :func:`init_weights` — N(0, 0.02) weights, zero biases.
* :class:`InstanceNorm` — instance norm without affine parameters, by either of two kernels.
* :class:`FewOutputConv2d` — the last layers (3 or 1 output channels), by either of two algorithms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InstanceNorm(nn.Module):
    """Instance normalisation without affine parameters and without running statistics, as the
    paper uses it: each image's channel is normalised over its own pixels.

    Group norm with one channel per group computes exactly that, and torch's group-norm kernel
    is 2.5-3.6x faster than its instance-norm kernel on CPU (torch 2.14, fwd+bwd, measured in
    NCHW at the sizes these networks use). ``group_norm_kernel`` picks it; the speed settings
    turn it on (:mod:`cgbench.speed`); off, this is ``nn.InstanceNorm2d(affine=False)``. The two
    agree to float rounding (tests/test_speed.py), and neither holds state, so checkpoints do
    not depend on the choice.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels, self.eps = channels, eps
        self.group_norm_kernel = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.group_norm_kernel:
            return F.group_norm(x, self.channels, eps=self.eps)
        return F.instance_norm(x, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}, group_norm_kernel={self.group_norm_kernel}"


NORMS = ("instance", "batch")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation of a layer: ``instance`` (:class:`InstanceNorm`, CycleGAN's) or ``batch``
    (pix2pix's: affine batch norm that always normalises with the statistics of the batch it
    sees, at training and at test time as the pix2pix paper does, so it keeps no running state)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=False)
    return InstanceNorm(channels)


class FewOutputConv2d(nn.Conv2d):
    """A stride-1 convolution with few output channels: the generator's last layer (ngf → 3,
    7x7) and the PatchGAN's (→ 1, 4x4).

    oneDNN runs such a convolution far below its speed on wide outputs. With ``tap_decomposition``
    set (by the speed settings, :mod:`cgbench.speed`), the convolution is computed as one 1x1
    convolution that gives every (output channel, kernel tap) product at every pixel, followed by
    a fold that adds each tap's map at its offset: the same products and sums, in another order.
    On CPU that is 1.8x faster forward and backward for the generator's last layer at 128 px
    and 4x for the PatchGAN's. The parameters are the usual ``weight`` and ``bias``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=padding)
        self.tap_decomposition = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.tap_decomposition and self.in_channels >= 32):  # measured: no gain from 16 inputs
            return super().forward(x)
        out_channels, in_channels, k, _ = self.weight.shape
        if self.padding[0]:
            x = F.pad(x, [self.padding[0]] * 4)
        n, _, height, width = x.shape
        # taps[o*k*k + i*k + j] = weight[o, :, k-1-i, k-1-j]: flipped, so that fold's "block position
        # plus offset" lands each product on the output pixel it belongs to. (As a 1x1 convolution
        # this measured 2-3x faster, forward and backward, than as torch.matmul.)
        taps = self.weight.flip(2, 3).permute(0, 2, 3, 1).reshape(out_channels * k * k, in_channels, 1, 1)
        products = F.conv2d(x, taps).view(n, out_channels * k * k, height * width)
        summed = F.fold(products, (height + k - 1, width + k - 1), k)
        out = summed[:, :, k - 1 : height, k - 1 : width]
        return out + self.bias.view(1, -1, 1, 1) if self.bias is not None else out


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str = "instance"):
        super().__init__()
        bias = norm != "batch"
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


UPSAMPLING = ("deconv", "resize")


def upsampling(kind: str, in_channels: int, out_channels: int, bias: bool) -> nn.Module:
    """A x2 upsampling layer of the generator: the paper's stride-1/2 3x3 convolution ("deconv"),
    or a nearest-neighbour resize followed by a 3x3 convolution ("resize", Odena et al. 2016), whose
    kernel covers every output pixel alike, so it cannot draw the checkerboard that the uneven
    overlap of a transposed convolution's kernel draws early in training."""
    if kind == "deconv":
        return nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=bias)
    if kind == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                             nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias))
    raise ValueError(f"upsampling {kind!r} is not one of: {', '.join(UPSAMPLING)}")


class ResnetGenerator(nn.Module):
    """The paper's generator: 3 channels in, 3 channels out in [-1, 1]. Instance norm (the
    paper's); ``norm="batch"`` builds the authors' batch-norm variant (no conv biases before a norm)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 6,
                 norm: str = "instance", upsample: str = "deconv"):
        super().__init__()
        bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias), norm_layer(norm, ngf), nn.ReLU(True),
        ]
        for mult in (1, 2):  # d128, d256
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                norm_layer(norm, ngf * mult * 2), nn.ReLU(True),
            ]
        layers += [ResidualBlock(ngf * 4, norm) for _ in range(n_blocks)]
        for mult in (4, 2):  # u128, u64
            layers += [
                upsampling(upsample, ngf * mult, ngf * mult // 2, bias),
                norm_layer(norm, ngf * mult // 2), nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), FewOutputConv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: one real/fake score per (70x70 with n_layers=3) patch; raw scores, no sigmoid."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = ndf
        bias = norm != "batch"  # batch norm's shift makes a bias redundant (the authors' layers)
        for i in range(1, n_layers + 1):
            out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=bias), norm_layer(norm, out),
                       nn.LeakyReLU(0.2, True)]
            channels = out
        layers += [FewOutputConv2d(channels, 1, 4, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Conv weights from N(0, gain), biases 0; batch-norm scales from N(1, gain), shifts 0 (the
    papers' initialisation)."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return net


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
