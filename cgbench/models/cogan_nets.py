"""CoGAN's coupled networks (Liu & Tuzel, NIPS 2016) at the suite's image sizes.

* :class:`CoupledGenerator` — one DCGAN-style generator per domain from one latent code z. The
  projection of z and every upsampling but the last are *one* module shared by both domains
  (they decode the high-level semantics); each domain has its own last transposed convolution
  to 3 channels with tanh (the low-level rendering), as CoGAN's face and digit generators
  (all layers shared but the last).
* :class:`CoupledDiscriminator` — one DCGAN-style discriminator per domain: each domain has its
  own first stride-2 convolution (low-level features); the remaining stride-2 convolutions and
  the final score are *one* module shared by both (high-level features).

Sizes: z (B, latent) is projected by a transposed convolution to s0 x s0 (s0 = 4 for a power of
two: 32 px → 3 upsamplings, 64 px → 4, 128 px → 5), then doubled up to the image size.
Instance norm without affine parameters replaces DCGAN's batch norm so that training at the
paper's batch size 1 and the per-image latent search at test time behave the same.
"""

from __future__ import annotations

import torch
from torch import nn

from cgbench.models.networks import InstanceNorm


def _norm(channels: int) -> nn.Module:
    return InstanceNorm(channels)


def upsamplings(image_size: int) -> int:
    """Doublings from the start size s0 (>= 4, an integer) to ``image_size``."""
    n, size = 0, image_size
    while size % 2 == 0 and size // 2 >= 4:
        size //= 2
        n += 1
    return n


class CoupledGenerator(nn.Module):
    def __init__(self, latent_dim: int, image_size: int, ngf: int = 64, out_channels: int = 3):
        super().__init__()
        n = upsamplings(image_size)
        if n < 1:
            raise ValueError(f"image size {image_size} cannot be reached by doubling from >= 4 px")
        start = image_size // 2**n
        widths = [ngf * min(2 ** (n - 1 - i), 8) for i in range(n)]  # channels at start, 2·start, ...
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, widths[0], start), _norm(widths[0]), nn.ReLU(True)]
        for i in range(1, n):
            layers += [nn.ConvTranspose2d(widths[i - 1], widths[i], 4, stride=2, padding=1), _norm(widths[i]),
                       nn.ReLU(True)]
        self.latent_dim = latent_dim
        self.trunk = nn.Sequential(*layers)  # shared by both domains

        def head() -> nn.Module:
            return nn.Sequential(nn.ConvTranspose2d(widths[-1], out_channels, 4, stride=2, padding=1), nn.Tanh())

        self.heads = nn.ModuleDict({"X": head(), "Y": head()})

    def domain(self, name: str) -> nn.Sequential:
        """The generator of one domain: the shared trunk followed by that domain's head."""
        return nn.Sequential(self.trunk, self.heads[name])

    def render(self, z: torch.Tensor, name: str) -> torch.Tensor:
        return self.heads[name](self.trunk(z[:, :, None, None]))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(G_X(z), G_Y(z)): a label map and a photo rendered from the same code."""
        h = self.trunk(z[:, :, None, None])
        return self.heads["X"](h), self.heads["Y"](h)


class CoupledDiscriminator(nn.Module):
    def __init__(self, image_size: int, ndf: int = 64, in_channels: int = 3):
        super().__init__()

        def first() -> nn.Module:
            return nn.Sequential(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True))

        self.firsts = nn.ModuleDict({"X": first(), "Y": first()})
        layers: list[nn.Module] = []
        size, channels, i = image_size // 2, ndf, 1
        while size % 2 == 0 and size // 2 >= 4:
            out = ndf * min(2**i, 8)
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), _norm(out), nn.LeakyReLU(0.2, True)]
            size, channels, i = size // 2, out, i + 1
        layers.append(nn.Conv2d(channels, 1, size))  # one raw score per image
        self.shared = nn.Sequential(*layers)  # shared by both domains

    def domain(self, name: str) -> nn.Sequential:
        """The discriminator of one domain: its own first layer, then the shared layers."""
        return nn.Sequential(self.firsts[name], self.shared)

    def forward(self, image: torch.Tensor, name: str) -> torch.Tensor:
        return self.shared(self.firsts[name](image)).flatten(1)
