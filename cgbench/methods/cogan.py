"""CoGAN (Liu & Tuzel, NIPS 2016): coupled GANs learn a joint distribution from unpaired data.

Two GANs, one per domain, are trained on unpaired label maps and photos from one latent code z:

    gen_X: min E_z[BCE(D_X(G_X(z)), real)]            gen_Y: min E_z[BCE(D_Y(G_Y(z)), real)]
    D_X:   min ½(BCE(D_X(x), real) + BCE(D_X(G_X(z)), fake))    D_Y likewise on photos y

where G_X and G_Y share their early layers (the projection of z and all upsamplings but the
last) and D_X and D_Y share their late layers (all but the first), so that one code renders as a
corresponding (label map, photo) pair (:mod:`cgbench.models.cogan_nets`).

Translation (as the CycleGAN paper uses CoGAN): to map a label map x to a photo, find the code
whose label rendering reproduces it, z* = argmin_z ‖G_X(z) − x‖₂², then return G_Y(z*); photo →
labels alike. The search is batched (one code per image, independent since the loss is summed
over images, Adam is per coordinate and instance norm per image), starts from codes drawn by a
torch.Generator seeded from ``seed`` (evaluation is deterministic and leaves the global RNG
alone), runs ``cogan_search_steps`` Adam steps at ``cogan_search_lr`` with the networks frozen,
and works under ``torch.inference_mode`` / ``no_grad`` callers (it re-enables autograd locally).

Choices where the CoGAN paper is terse or sized otherwise: DCGAN-style layers at the suite's
sizes (32, 64, 128 px; the number of upsamplings follows the image size), ``ngf`` / ``ndf``
widths, instance norm instead of batch norm (batch size 1), the cross-entropy GAN loss of the
CoGAN paper whatever ``gan_mode`` says, z ~ N(0, I) of size ``latent_dim`` (100), Adam 2e-4,
β = (0.5, 0.999) and the suite's schedule, no image pool. The search objective (mean squared
pixel error) and optimiser (Adam, a fixed number of steps, so its cost is known in advance) are
this suite's choices; the CycleGAN paper only says the code that reproduces the input is found.
"""

from __future__ import annotations

import torch

from cgbench.config import Config
from cgbench.methods.base import GANLoss, Method, set_requires_grad
from cgbench.models.cogan_nets import CoupledDiscriminator, CoupledGenerator
from cgbench.models.networks import init_weights


class CoGAN(Method):
    """CoGAN: coupled generators (shared early layers) and discriminators (shared late layers); translates by latent search."""

    name = "cogan"
    terms = ("gen_X", "gen_Y", "D_X", "D_Y")
    supports_ddp = False  # its per-domain views share modules outside any DDP wrapper

    def __init__(self, config: Config, device: torch.device):
        super().__init__(config, device)
        c = config
        self.G = init_weights(CoupledGenerator(c.latent_dim, c.image_size, c.ngf), c.init_gain).to(device)
        self.D = init_weights(CoupledDiscriminator(c.image_size, c.ndf), c.init_gain).to(device)
        self.networks = {"G": self.G, "D": self.D}
        # The per-domain networks as views: shared modules are the same objects in both.
        self.G_X, self.G_Y = self.G.domain("X"), self.G.domain("Y")
        self.D_X, self.D_Y = self.D.domain("X"), self.D.domain("Y")
        self.optimizers = {
            "G": self.adam(self.G.parameters()),  # each shared tensor once
            "D": self.adam(self.D.parameters()),
        }
        self.gan_loss = GANLoss("vanilla")

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        G, D = self.G, self.D

        # Forward: one batch of codes rendered in both domains (x and y are unpaired); generator
        # losses, with the discriminators frozen.
        z = torch.randn(x.shape[0], self.config.latent_dim, device=x.device)
        set_requires_grad([D], False)
        with self.autocast():
            fake_x, fake_y = G(z)
            loss = {
                "gen_X": self.gan_loss(D(fake_x, "X"), True),
                "gen_Y": self.gan_loss(D(fake_y, "Y"), True),
            }

        # Generator step (the shared layers get the gradients of both domains).
        self.optimizers["G"].zero_grad(set_to_none=True)
        (loss["gen_X"] + loss["gen_Y"]).backward()
        self.optimizers["G"].step()

        # Discriminator losses: real images vs. this step's renderings.
        set_requires_grad([D], True)
        with self.autocast():
            loss["D_X"] = self._discriminator_loss("X", x, fake_x)
            loss["D_Y"] = self._discriminator_loss("Y", y, fake_y)

        # Discriminator step.
        self.optimizers["D"].zero_grad(set_to_none=True)
        (loss["D_X"] + loss["D_Y"]).backward()
        self.optimizers["D"].step()
        return {k: v.detach() for k, v in loss.items()}

    def _discriminator_loss(self, domain: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.gan_loss(self.D(real, domain), True) + self.gan_loss(self.D(fake.detach(), domain), False))

    # --- translation by latent search ---------------------------------------------------

    def find_codes(self, images: torch.Tensor, domain: str) -> torch.Tensor:
        """z* = argmin_z ‖G_domain(z) − images‖₂² per image: seeded start, fixed number of Adam steps."""
        c = self.config
        flags = [p.requires_grad for p in self.G.parameters()]
        with torch.inference_mode(False), torch.enable_grad():
            target = images.clone()  # an inference tensor cannot take part in autograd
            start = torch.randn(len(images), c.latent_dim, generator=torch.Generator().manual_seed(c.seed))
            z = start.to(images.device).requires_grad_(True)
            search = torch.optim.Adam([z], lr=c.cogan_search_lr)
            set_requires_grad([self.G], False)  # the networks stay fixed
            try:
                for _ in range(c.cogan_search_steps):
                    error = (self.G.render(z, domain) - target).pow(2).flatten(1).mean(1).sum()
                    search.zero_grad(set_to_none=True)
                    error.backward()
                    search.step()
            finally:
                for p, flag in zip(self.G.parameters(), flags):
                    p.requires_grad_(flag)
        return z.detach()

    def labels_to_photo(self, x: torch.Tensor) -> torch.Tensor:
        z = self.find_codes(x, "X")
        with torch.no_grad():
            return self.G.render(z, "Y")

    def photo_to_labels(self, y: torch.Tensor) -> torch.Tensor:
        z = self.find_codes(y, "Y")
        with torch.no_grad():
            return self.G.render(z, "X")

    def samples(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        z = torch.randn(len(x), self.config.latent_dim, generator=torch.Generator().manual_seed(self.config.seed + 1))
        with torch.no_grad():
            pair_x, pair_y = self.G(z.to(x.device))
        return {"G_X(z)": pair_x, "G_Y(z)": pair_y, **super().samples(x, y)}

    def probe(self, image: torch.Tensor) -> None:
        z = image.new_zeros(1, self.config.latent_dim)
        for name, out in (("G_X", self.G.render(z, "X")), ("G_Y", self.G.render(z, "Y")),
                          ("D_X", self.D(image, "X")), ("D_Y", self.D(image, "Y"))):
            if out.shape[-1] < 1 or (name.startswith("G") and tuple(out.shape[-2:]) != tuple(image.shape[-2:])):
                raise RuntimeError(name)
