"""CycleGAN and the paper's ablations (Tables 4 and 5).

Notation of the paper: X = label maps, Y = photos, G: X→Y, F: Y→X; D_Y judges photos and D_X
label maps. The full objective is

    L = L_GAN(G, D_Y) + L_GAN(F, D_X) + λ (‖F(G(x)) − x‖₁ + ‖G(F(y)) − y‖₁)
        [+ λ_idt λ (‖G(y) − y‖₁ + ‖F(x) − x‖₁)]

and each ablation is a row of :data:`ABLATIONS` saying which of those terms are on. A term that
is off is neither computed nor optimised, and is recorded as 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cgbench.config import Config
from cgbench.errors import ConfigError
from cgbench.methods.base import ImagePool, TwoWayGAN, pool_seed, set_requires_grad
from cgbench.speed import GRAPH_SAFE_STEP, INDEPENDENT_HALVES, Half


@dataclass(frozen=True)
class Ablation:
    name: str
    paper_row: str  # the row name in the paper's Tables 4 and 5
    gan: bool  # both adversarial terms (and the discriminators)
    cycle_forward: bool  # x → G(x) → F(G(x)) ≈ x
    cycle_backward: bool  # y → F(y) → G(F(y)) ≈ y
    identity: bool = False  # G(y) ≈ y and F(x) ≈ x


ABLATIONS: dict[str, Ablation] = {
    a.name: a
    for a in (
        Ablation("cycle-only", "Cycle alone", gan=False, cycle_forward=True, cycle_backward=True),
        Ablation("no-cycle", "GAN alone", gan=True, cycle_forward=False, cycle_backward=False),
        Ablation("forward-cycle", "GAN + forward cycle", gan=True, cycle_forward=True, cycle_backward=False),
        Ablation("backward-cycle", "GAN + backward cycle", gan=True, cycle_forward=False, cycle_backward=True),
        Ablation("cyclegan", "CycleGAN", gan=True, cycle_forward=True, cycle_backward=True),
        Ablation("identity", "CycleGAN + identity", gan=True, cycle_forward=True, cycle_backward=True, identity=True),
    )
}


def get_ablation(name: str) -> Ablation:
    if name not in ABLATIONS:
        raise ConfigError(f"unknown ablation {name!r}; valid ablations: {', '.join(ABLATIONS)}")
    return ABLATIONS[name]


class CycleGAN(TwoWayGAN):
    """CycleGAN (Zhu et al. 2017): two GAN losses plus forward and backward cycle consistency; ablations by --ablation."""

    name = "cyclegan"
    terms = ("G_gan", "F_gan", "cycle_forward", "cycle_backward", "idt_G", "idt_F", "D_Y", "D_X")
    # L splits into everything that starts from x and everything that starts from y, which share
    # no activation: the speed layer may compute the two halves concurrently. Its step is a G step,
    # the pools' query and a D step: the speed layer may capture the two steps as CUDA graphs.
    capabilities = TwoWayGAN.capabilities | {INDEPENDENT_HALVES, GRAPH_SAFE_STEP}

    def __init__(self, config: Config, device: torch.device):
        super().__init__(config, device)
        self.ablation = get_ablation(config.ablation)
        self.pools = {"fake_x": ImagePool(config.pool_size, pool_seed(config.seed)),
                      "fake_y": ImagePool(config.pool_size, pool_seed(config.seed + 1))}
        self.l1 = nn.L1Loss()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        terms, fakes = self.generator_step(x, y)  # G step: forward, losses, backward, Adam
        pooled = self.query_pools(fakes)  # the pools' random choice, on the host
        return self.recorded({**terms, **self.discriminator_step(x, y, pooled)})  # D step

    def generator_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                         dict[str, torch.Tensor]]:
        """G and F's step, the discriminators frozen: L_G = L_from_x + L_from_y, one backward of the sum."""
        set_requires_grad([self.D_X, self.D_Y], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        from_x, from_y = self.halves.backward_sum(lambda: self.loss_from_x(x), lambda: self.loss_from_y(y))
        self.optimizers["G"].step()
        return {**from_x.terms, **from_y.terms}, {"fake_y": from_x.fake, "fake_x": from_y.fake}

    def query_pools(self, fakes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return super().query_pools(fakes) if self.ablation.gan else {}  # no discriminator, no pool

    def discriminator_step(self, x: torch.Tensor, y: torch.Tensor,
                           pooled: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """D_Y and D_X's step: real images against fakes drawn from the pools of past fakes."""
        if not self.ablation.gan:
            zero = x.new_zeros(())
            return {"D_Y": zero, "D_X": zero}
        set_requires_grad([self.D_X, self.D_Y], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        judged_y, judged_x = self.halves.backward_sum(lambda: self.judge(self.D_Y, y, pooled["fake_y"]),
                                                      lambda: self.judge(self.D_X, x, pooled["fake_x"]))
        self.optimizers["D"].step()
        return {"D_Y": judged_y.loss, "D_X": judged_x.loss}

    def loss_from_x(self, x: torch.Tensor) -> Half:
        """The half of L that starts from x: L_GAN(G, D_Y) + λ‖F(G(x)) − x‖₁ [+ λ_idt λ‖F(x) − x‖₁]."""
        on, c = self.ablation, self.config
        zero = x.new_zeros(())
        with self.autocast():
            fake_y = self.G(x)
            terms = {
                "G_gan": self.gan_loss(self.D_Y(fake_y), True) if on.gan else zero,
                "cycle_forward": self.l1(self.F(fake_y), x) if on.cycle_forward else zero,  # F(G(x)) ≈ x
                "idt_F": self.l1(self.F(x), x) if on.identity else zero,
            }
        loss = terms["G_gan"] + c.lambda_cycle * (terms["cycle_forward"] + c.lambda_identity * terms["idt_F"])
        return Half(loss, terms, fake_y.detach())

    def loss_from_y(self, y: torch.Tensor) -> Half:
        """The half of L that starts from y: L_GAN(F, D_X) + λ‖G(F(y)) − y‖₁ [+ λ_idt λ‖G(y) − y‖₁]."""
        on, c = self.ablation, self.config
        zero = y.new_zeros(())
        with self.autocast():
            fake_x = self.F(y)
            terms = {
                "F_gan": self.gan_loss(self.D_X(fake_x), True) if on.gan else zero,
                "cycle_backward": self.l1(self.G(fake_x), y) if on.cycle_backward else zero,  # G(F(y)) ≈ y
                "idt_G": self.l1(self.G(y), y) if on.identity else zero,
            }
        loss = terms["F_gan"] + c.lambda_cycle * (terms["cycle_backward"] + c.lambda_identity * terms["idt_G"])
        return Half(loss, terms, fake_x.detach())

    def judge(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> Half:
        """One discriminator's loss on real images and (pooled) fakes."""
        with self.autocast():
            return Half(self.discriminator_loss(D, real, fake))

    def samples(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        fake_y, fake_x = self.G(x), self.F(y)
        return {"x": x, "G(x)": fake_y, "F(G(x))": self.F(fake_y), "y": y, "F(y)": fake_x, "G(F(y))": self.G(fake_x)}
