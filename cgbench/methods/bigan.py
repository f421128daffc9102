"""BiGAN / ALI (Donahue et al., Dumoulin et al., ICLR 2017) used as a translator.

In BiGAN a generator maps a latent code to data, an encoder maps data to a code, and one
discriminator sees *joint* (code, data) pairs: (z, G(z)) against (E(d), d). Used as a
translator, the label map plays the code and the photo the data:

    G: X→Y (labels→photo), E: Y→X (photo→labels), one joint discriminator D on (labels, photo)
    D:    min ½(E[(D(E(y), y) − 1)²] + E[D(x, G(x))²])      the encoder pair is "real"
    G, E: min E[(D(x, G(x)) − 1)²] + E[D(E(y), y)²]         each side tries to pass as the other

Choices: G and E are CycleGAN's ResNet generator; D is CycleGAN's PatchGAN with 6 input channels
on the concatenation (labels, photo), so it judges local joint patches; least-squares GAN loss
(``gan_mode``), CycleGAN's optimiser, schedule and image pool — one pool per kind of pair, both
pairs holding a generated half. No reconstruction term: BiGAN learns E ≈ G⁻¹ only through D.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from cgbench.config import Config
from cgbench.methods.base import GANLoss, ImagePool, Method, pool_seed, set_requires_grad
from cgbench.models.networks import PatchDiscriminator, ResnetGenerator, init_weights
from cgbench.speed import GRAPH_SAFE_STEP


class BiGAN(Method):
    """BiGAN/ALI: generator G and encoder E against one joint discriminator on (labels, photo)."""

    name = "bigan"
    terms = ("G_gan", "E_gan", "D")
    capabilities = frozenset({GRAPH_SAFE_STEP})  # a G and E step, the pools' query, a D step

    def __init__(self, config: Config, device: torch.device):
        super().__init__(config, device)
        c = config

        def generator() -> nn.Module:
            return init_weights(ResnetGenerator(3, 3, c.ngf, c.n_blocks, upsample=c.upsample), c.init_gain).to(device)

        self.G, self.E = generator(), generator()
        self.D = init_weights(PatchDiscriminator(6, c.ndf, c.n_layers_d), c.init_gain).to(device)
        self.networks = {"G": self.G, "E": self.E, "D": self.D}
        self.optimizers = {
            "G": self.adam(itertools.chain(self.G.parameters(), self.E.parameters())),
            "D": self.adam(self.D.parameters()),
        }
        self.pools = {"generated": ImagePool(c.pool_size, pool_seed(c.seed)),
                      "encoded": ImagePool(c.pool_size, pool_seed(c.seed + 1))}
        self.gan_loss = GANLoss(c.gan_mode)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        terms, pairs = self.generator_step(x, y)  # G and E's step: forward, losses, backward, Adam
        pooled = self.query_pools(pairs)  # the pools' random choice, on the host
        return self.recorded({**terms, **self.discriminator_step(x, y, pooled)})  # D step

    def generator_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                         dict[str, torch.Tensor]]:
        """The two joint pairs, (x, G(x)) from the generator and (E(y), y) from the encoder; generator
        and encoder losses, with D frozen (each pair tries to pass for the other); their step."""
        G, E, D = self.G, self.E, self.D
        set_requires_grad([D], False)
        with self.autocast():
            generated, encoded = joint(x, G(x)), joint(E(y), y)
            loss = {
                "G_gan": self.gan_loss(D(generated), True),
                "E_gan": self.gan_loss(D(encoded), False),
            }
        self.optimizers["G"].zero_grad(set_to_none=True)
        (loss["G_gan"] + loss["E_gan"]).backward()
        self.optimizers["G"].step()
        return loss, {"encoded": encoded.detach(), "generated": generated.detach()}

    def discriminator_step(self, x: torch.Tensor, y: torch.Tensor,
                           pooled: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encoder pairs are "real", generator pairs "fake" (past pairs from the pools); D's step."""
        D = self.D
        set_requires_grad([D], True)
        real, fake = pooled["encoded"], pooled["generated"]
        with self.autocast():
            loss = {"D": 0.5 * (self.gan_loss(D(real.detach()), True) + self.gan_loss(D(fake.detach()), False))}
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss["D"].backward()
        self.optimizers["D"].step()
        return loss

    def labels_to_photo(self, x: torch.Tensor) -> torch.Tensor:
        return self.G(x)

    def photo_to_labels(self, y: torch.Tensor) -> torch.Tensor:
        return self.E(y)

    def samples(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"x": x, "G(x)": self.G(x), "y": y, "E(y)": self.E(y)}

    def probe(self, image: torch.Tensor) -> None:
        for name, out in (("G", self.G(image)), ("E", self.E(image)), ("D", self.D(joint(image, image)))):
            if out.shape[-1] < 1 or out.shape[-2] < 1:
                raise RuntimeError(name)


def joint(labels: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """What the joint discriminator sees: (labels, photo) as one 6-channel input."""
    return torch.cat([labels, photo], 1)
