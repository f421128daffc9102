"""SimGAN (Shrivastava et al., CVPR 2017) as the CycleGAN paper's unpaired baseline.

Both mappings are trained with their adversarial term plus SimGAN's self-regularisation, which
keeps each output close to its own input; there is no cycle:

    L = L_GAN(G, D_Y) + L_GAN(F, D_X) + λ_self (‖x − G(x)‖₁ + ‖y − F(y)‖₁)

Networks, GAN loss (``gan_mode``, least squares), image pool, optimiser and schedule are
CycleGAN's (the CycleGAN paper: every baseline but CoGAN uses its networks and training details).
The weight λ_self is not given by either paper (SimGAN tunes it per task); ``lambda_self``
defaults to 10, the weight the same objective gives the cycle terms that self-regularisation
replaces here, so the two rows differ only in which L1 is added.

:class:`SelfRegularised` holds the shared objective; the distance between an input and its
translation is a hook, which ``feature-gan`` replaces with a distance between VGG features.
"""

from __future__ import annotations

import torch

from cgbench.config import Config
from cgbench.methods.base import ImagePool, TwoWayGAN, pool_seed, set_requires_grad


class SelfRegularised(TwoWayGAN):
    """GAN + λ_self·distance(input, translation) for both mappings, on CycleGAN's networks."""

    terms = ("G_gan", "F_gan", "self_G", "self_F", "D_Y", "D_X")

    def __init__(self, config: Config, device: torch.device):
        super().__init__(config, device)
        self.pools = {"fake_x": ImagePool(config.pool_size, pool_seed(config.seed)),
                      "fake_y": ImagePool(config.pool_size, pool_seed(config.seed + 1))}

    def self_distance(self, source: torch.Tensor, translated: torch.Tensor) -> torch.Tensor:
        """‖source − translated‖₁ (mean over pixels)."""
        return (source - translated).abs().mean()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        G, F, D_X, D_Y = self.G, self.F, self.D_X, self.D_Y

        # Forward: both translations; generator losses, with the discriminators frozen:
        # adversarial + self-regularisation, no cycle.
        set_requires_grad([D_X, D_Y], False)
        with self.autocast():
            fake_y, fake_x = G(x), F(y)
            loss = {
                "G_gan": self.gan_loss(D_Y(fake_y), True),
                "F_gan": self.gan_loss(D_X(fake_x), True),
                "self_G": self.self_distance(x, fake_y),
                "self_F": self.self_distance(y, fake_x),
            }
        loss_G = loss["G_gan"] + loss["F_gan"] + c.lambda_self * (loss["self_G"] + loss["self_F"])

        # Generator step.
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss_G.backward()
        self.optimizers["G"].step()

        # Discriminator losses: real vs. a fake drawn from the pool of past fakes.
        set_requires_grad([D_X, D_Y], True)
        with self.autocast():
            loss["D_Y"] = self.discriminator_loss(D_Y, y, self.pools["fake_y"].query(fake_y))
            loss["D_X"] = self.discriminator_loss(D_X, x, self.pools["fake_x"].query(fake_x))

        # Discriminator step.
        self.optimizers["D"].zero_grad(set_to_none=True)
        (loss["D_Y"] + loss["D_X"]).backward()
        self.optimizers["D"].step()
        return {k: v.detach() for k, v in loss.items()}


class SimGAN(SelfRegularised):
    """SimGAN: GAN + pixel self-regularisation λ_self·‖x − G(x)‖₁ for both mappings, no cycle."""

    name = "simgan"
