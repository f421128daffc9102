"""pix2pix (Isola et al., CVPR 2017): the paired, supervised upper bound of Tables 2 and 3.

Trained on (label map, photo) pairs of the same scene — the trainer gives it a
:class:`~cgbench.data.sampler.PairedSampler` because ``paired = True`` — in both directions, so
one run fills a row of both tables:

    G: X→Y   min  L_cGAN(G, D_Y) + λ_L1 ‖y − G(x)‖₁      D_Y judges (x, y) vs. (x, G(x))
    F: Y→X   min  L_cGAN(F, D_X) + λ_L1 ‖x − F(y)‖₁      D_X judges (y, x) vs. (y, F(y))

Choices, following the pix2pix paper and its public code (their defaults):

* generator: the U-Net of :mod:`cgbench.models.unet`, sized to the image (bottleneck 1x1 for
  a power of two), dropout 0.5 in the deep decoder layers;
* discriminator: the conditional 70x70 PatchGAN — CycleGAN's PatchDiscriminator on the
  6-channel concatenation (input, output);
* batch norm in both (``norm=auto``; ``--set norm=instance`` gives CycleGAN's instance norm);
* each iteration updates D first, on this step's fakes, then G against the updated D;
* at test time the generator runs as in training, as the pix2pix paper does: dropout stays on
  (its only noise source) and batch norm uses the statistics of the image at hand (batch 1);
  the dropout draws come from a generator seeded by ``seed``, so a score is reproducible;
* vanilla (cross-entropy) GAN loss whatever ``gan_mode`` says — pix2pix's objective;
  λ_L1 = ``lambda_l1`` (100); the discriminator objective halved; no image pool (pix2pix's
  pool size is 0); Adam 2e-4, β = (0.5, 0.999), the suite's lr schedule.
"""

from __future__ import annotations

import torch
from torch import nn

from cgbench.config import Config
from cgbench.methods.base import GANLoss, TwoWayGAN, set_requires_grad
from cgbench.models.networks import PatchDiscriminator, init_weights
from cgbench.models.unet import UnetGenerator


class Pix2Pix(TwoWayGAN):
    """pix2pix: paired conditional GAN + λ_L1·L1, both directions (the supervised upper bound)."""

    name = "pix2pix"
    terms = ("G_gan", "G_L1", "F_gan", "F_L1", "D_Y", "D_X")
    paired = True

    default_norm = "batch"
    norms = ("batch", "instance")

    def __init__(self, config: Config, device: torch.device):
        super().__init__(config, device)
        self.gan_loss = GANLoss("vanilla")  # pix2pix's objective, whatever gan_mode says
        self.l1 = nn.L1Loss()
        self.test_noise = torch.Generator().manual_seed(config.seed)  # seeds test-time dropout

    def build_generator(self) -> nn.Module:
        c = self.config
        return init_weights(UnetGenerator(3, 3, c.image_size, c.ngf, norm=self.norm), c.init_gain).to(self.device)

    def build_discriminator(self) -> nn.Module:  # conditional: sees (input, output) as 6 channels
        c = self.config
        return init_weights(PatchDiscriminator(6, c.ndf, c.n_layers_d, norm=self.norm), c.init_gain).to(self.device)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        G, F, D_X, D_Y = self.G, self.F, self.D_X, self.D_Y

        # Forward: both translations of the pair (x, y).
        with self.autocast():
            fake_y, fake_x = G(x), F(y)

        # Discriminator losses: the real pair vs. the pair with this step's generated output; D step.
        set_requires_grad([D_X, D_Y], True)
        with self.autocast():
            loss = {"D_Y": self.discriminator_loss(D_Y, pair(x, y), pair(x, fake_y)),
                    "D_X": self.discriminator_loss(D_X, pair(y, x), pair(y, fake_x))}
        self.optimizers["D"].zero_grad(set_to_none=True)
        (loss["D_Y"] + loss["D_X"]).backward()
        self.optimizers["D"].step()

        # Generator losses against the updated discriminators, frozen: fool D on (input, output), match the pair.
        set_requires_grad([D_X, D_Y], False)
        with self.autocast():
            loss.update({
                "G_gan": self.gan_loss(D_Y(pair(x, fake_y)), True),
                "G_L1": self.l1(fake_y, y),
                "F_gan": self.gan_loss(D_X(pair(y, fake_x)), True),
                "F_L1": self.l1(fake_x, x),
            })
        loss_G = loss["G_gan"] + loss["F_gan"] + c.lambda_l1 * (loss["G_L1"] + loss["F_L1"])

        # Generator step.
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss_G.backward()
        self.optimizers["G"].step()
        return {term: loss[term].detach() for term in self.terms}

    def _as_in_training(self, generator: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """pix2pix at test time: the generator in training mode (dropout on, batch norm on the
        image's own statistics), one image at a time, dropout seeded from ``test_noise``."""
        if generator.training:
            return generator(inputs)
        seed = int(torch.randint(2**62, (1,), generator=self.test_noise))
        with torch.random.fork_rng(devices=[inputs.device] if inputs.device.type == "cuda" else []):
            torch.manual_seed(seed)
            generator.train(True)
            try:
                return torch.cat([generator(image[None]) for image in inputs])
            finally:
                generator.train(False)

    def labels_to_photo(self, x: torch.Tensor) -> torch.Tensor:
        return self._as_in_training(self.G, x)

    def photo_to_labels(self, y: torch.Tensor) -> torch.Tensor:
        return self._as_in_training(self.F, y)

    def probe(self, image: torch.Tensor) -> None:
        for name, out in (("G", self.G(image)), ("F", self.F(image)),
                          ("D_Y", self.D_Y(pair(image, image))), ("D_X", self.D_X(pair(image, image)))):
            if out.shape[-1] < 1 or out.shape[-2] < 1:
                raise RuntimeError(name)


def pair(condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """What a conditional discriminator sees: (condition, image) as one 6-channel input."""
    return torch.cat([condition, image], 1)
