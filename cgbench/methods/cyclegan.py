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

    def __init__(self, config: Config, device: torch.device):
        super().__init__(config, device)
        self.ablation = get_ablation(config.ablation)
        self.pools = {"fake_x": ImagePool(config.pool_size, pool_seed(config.seed)),
                      "fake_y": ImagePool(config.pool_size, pool_seed(config.seed + 1))}
        self.l1 = nn.L1Loss()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        on, c = self.ablation, self.config
        G, F, D_X, D_Y = self.G, self.F, self.D_X, self.D_Y
        zero = x.new_zeros(())

        # Forward and generator losses, with the discriminators frozen. The objective splits into
        # a half that starts from x and a half that starts from y; they share no activation, so
        # the speed settings may run them concurrently (cgbench.speed). Summed, they are L above.
        def from_x():
            fake_y = G(x)
            loss = {
                "G_gan": self.gan_loss(D_Y(fake_y), True) if on.gan else zero,
                "cycle_forward": self.l1(F(fake_y), x) if on.cycle_forward else zero,  # F(G(x)) ≈ x
                "idt_F": self.l1(F(x), x) if on.identity else zero,
            }
            weighted = loss["G_gan"] + c.lambda_cycle * (loss["cycle_forward"] + c.lambda_identity * loss["idt_F"])
            return weighted, (fake_y.detach(), loss)

        def from_y():
            fake_x = F(y)
            loss = {
                "F_gan": self.gan_loss(D_X(fake_x), True) if on.gan else zero,
                "cycle_backward": self.l1(G(fake_x), y) if on.cycle_backward else zero,  # G(F(y)) ≈ y
                "idt_G": self.l1(G(y), y) if on.identity else zero,
            }
            weighted = loss["F_gan"] + c.lambda_cycle * (loss["cycle_backward"] + c.lambda_identity * loss["idt_G"])
            return weighted, (fake_x.detach(), loss)

        set_requires_grad([D_X, D_Y], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        (fake_y, loss_x), (fake_x, loss_y) = self.halves.backward(from_x, from_y)

        # Generator step.
        self.optimizers["G"].step()
        loss = {**loss_x, **loss_y}

        # Discriminator losses: real vs. a fake drawn from the pool of past fakes; then the D step.
        if on.gan:
            set_requires_grad([D_X, D_Y], True)
            self.optimizers["D"].zero_grad(set_to_none=True)

            def judge(D, real, fake):
                def half():
                    loss_D = self.discriminator_loss(D, real, fake)
                    return loss_D, loss_D
                return half

            loss["D_Y"], loss["D_X"] = self.halves.backward(
                judge(D_Y, y, self.pools["fake_y"].query(fake_y)), judge(D_X, x, self.pools["fake_x"].query(fake_x))
            )
            self.optimizers["D"].step()
        else:
            loss["D_Y"] = loss["D_X"] = zero
        return {term: loss[term].detach() for term in self.terms}

    def samples(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        fake_y, fake_x = self.G(x), self.F(y)
        return {"x": x, "G(x)": fake_y, "F(G(x))": self.F(fake_y), "y": y, "F(y)": fake_x, "G(F(y))": self.G(fake_x)}
