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
from cgbench.speed import GRAPH_SAFE_STEP


class SelfRegularised(TwoWayGAN):
    """GAN + λ_self·distance(input, translation) for both mappings, on CycleGAN's networks."""

    terms = ("G_gan", "F_gan", "self_G", "self_F", "D_Y", "D_X")
    capabilities = TwoWayGAN.capabilities | {GRAPH_SAFE_STEP}  # a G step, the pools' query, a D step

    def __init__(self, config: Config, device: torch.device):
        super().__init__(config, device)
        self.pools = {"fake_x": ImagePool(config.pool_size, pool_seed(config.seed)),
                      "fake_y": ImagePool(config.pool_size, pool_seed(config.seed + 1))}

    def self_distance(self, source: torch.Tensor, translated: torch.Tensor) -> torch.Tensor:
        """‖source − translated‖₁ (mean over pixels)."""
        return (source - translated).abs().mean()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        terms, fakes = self.generator_step(x, y)  # G step: forward, losses, backward, Adam
        pooled = self.query_pools(fakes)  # the pools' random choice, on the host
        return self.recorded({**terms, **self.discriminator_step(x, y, pooled)})  # D step

    def generator_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                         dict[str, torch.Tensor]]:
        """Both translations; adversarial + self-regularisation losses (no cycle), with the
        discriminators frozen; the generators' step."""
        c = self.config
        G, F, D_X, D_Y = self.G, self.F, self.D_X, self.D_Y
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
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss_G.backward()
        self.optimizers["G"].step()
        return loss, {"fake_y": fake_y.detach(), "fake_x": fake_x.detach()}

    def discriminator_step(self, x: torch.Tensor, y: torch.Tensor,
                           pooled: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Real images against fakes drawn from the pools of past fakes; the discriminators' step."""
        set_requires_grad([self.D_X, self.D_Y], True)
        with self.autocast():
            loss = {"D_Y": self.discriminator_loss(self.D_Y, y, pooled["fake_y"]),
                    "D_X": self.discriminator_loss(self.D_X, x, pooled["fake_x"])}
        self.optimizers["D"].zero_grad(set_to_none=True)
        (loss["D_Y"] + loss["D_X"]).backward()
        self.optimizers["D"].step()
        return loss


class SimGAN(SelfRegularised):
    """SimGAN: GAN + pixel self-regularisation λ_self·‖x − G(x)‖₁ for both mappings, no cycle."""

    name = "simgan"
