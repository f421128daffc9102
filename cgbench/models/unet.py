"""The pix2pix U-Net generator, sized to the image.

An encoder of stride-2 4x4 convolutions (C64-C128-C256-C512-C512-...) down to the smallest size
the image divides into (1x1 for a power of two: 5 downsamplings at 32 px, 7 at 128 px, 8 at 256 px
as in pix2pix's ``unet_256``), and a mirrored decoder of stride-2 transposed convolutions; each
decoder layer also sees the encoder layer of the same size (skip connections). As in pix2pix:
LeakyReLU 0.2 in the encoder, ReLU in the decoder, no norm on the first and innermost encoder
layers, dropout 0.5 in the decoder layers between two 8·ngf-wide levels (3 of them at 256 px),
tanh output. Norm: ``batch`` (pix2pix's: affine batch norm on the statistics of the batch at
hand, at test time too, with no bias in the convolutions it follows) or ``instance`` (CycleGAN's:
instance norm without affine parameters); see :func:`cgbench.models.networks.norm_layer`.
"""

from __future__ import annotations

import torch
from torch import nn

from cgbench.models.networks import norm_layer


def unet_depth(image_size: int) -> int:
    """Number of downsamplings: halve while the size stays an integer and >= 1."""
    depth, size = 0, image_size
    while size % 2 == 0:
        size //= 2
        depth += 1
    return depth


class UnetBlock(nn.Module):
    """One level: down, the inner levels, up; its output is [input, up(...)] except the outermost."""

    def __init__(self, outer: int, inner: int, in_channels: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, dropout: bool = False, norm: str = "instance"):
        super().__init__()
        self.outermost = outermost
        in_channels = outer if in_channels is None else in_channels
        bias = norm != "batch"  # batch norm's shift makes a bias redundant (the authors' layers)
        down = nn.Conv2d(in_channels, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1), nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias), norm_layer(norm, outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, norm_layer(norm, inner), sub, nn.ReLU(True),
                      nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias), norm_layer(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix's U-Net: ``in_channels`` → ``out_channels`` in [-1, 1], for ``image_size`` squares."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, image_size: int = 256, ngf: int = 64,
                 dropout: bool = True, norm: str = "instance"):
        super().__init__()
        depth = unet_depth(image_size)
        if depth < 2:
            raise ValueError(f"image size {image_size} halves fewer than twice; the U-Net needs >= 2 levels")
        self.depth = depth
        widths = [ngf * min(2**i, 8) for i in range(depth)]  # encoder output channels per level
        block = UnetBlock(widths[-2], widths[-1], innermost=True, norm=norm)
        for i in range(depth - 2, 0, -1):
            wide = widths[i - 1] == widths[i] == 8 * ngf
            block = UnetBlock(widths[i - 1], widths[i], sub=block, dropout=dropout and wide, norm=norm)
        self.model = UnetBlock(out_channels, widths[0], in_channels=in_channels, sub=block, outermost=True,
                               norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
