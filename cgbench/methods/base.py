"""What every method shares: the GAN loss, the image pool, and the Method interface.

A method owns its networks and optimisers, runs one training iteration with
:meth:`Method.train_step`, names the loss terms it records, and exposes the two translators the
evaluators need (labels→photo and photo→labels). The trainer, the tracking and the evaluators
need nothing else from it. A method whose step is a generator step, the image pools' query and a
discriminator step says so (:data:`cgbench.speed.GRAPH_SAFE_STEP`), and the speed layer may then
capture the two steps as CUDA graphs (:mod:`cgbench.graphs`).
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, ClassVar, Iterable

import torch
from torch import nn

from cgbench.config import Config
from cgbench.errors import ConfigError
from cgbench.models.networks import PatchDiscriminator, ResnetGenerator, init_weights
from cgbench.speed import SHARED_DISCRIMINATOR_LOSS, Halves, resolve_speed


class GANLoss(nn.Module):
    """The adversarial loss: least squares (the paper's choice) or the vanilla BCE form."""

    def __init__(self, mode: str = "lsgan"):
        super().__init__()
        self.loss = nn.MSELoss() if mode == "lsgan" else nn.BCEWithLogitsLoss()

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        return self.loss(prediction, target)


class ImagePool:
    """The paper's buffer of the latest generated images (Shrivastava et al.).

    Until it holds ``size`` images it returns each new fake as is and stores it. Once full, with
    probability 1/2 it returns a random stored fake and puts the new one in its place, else it
    returns the new fake. Its random draws come from its own seeded generator, saved with it.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif torch.rand(1, generator=self.rng).item() < 0.5:
                index = int(torch.randint(len(self.images), (1,), generator=self.rng))
                out.append(self.images[index].clone())
                self.images[index] = image
            else:
                out.append(image)
        return torch.cat(out)

    def state_dict(self) -> dict[str, Any]:
        stacked = torch.cat(self.images).cpu() if self.images else torch.empty(0)
        return {"images": stacked, "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.images = [image.unsqueeze(0).to(device) for image in state["images"]]
        self.rng.set_state(state["rng"])


def pool_seed(seed: int) -> int:
    """The seed of an image pool in this process: ``seed`` in a single process; under
    DistributedDataParallel ``seed + 1000 * rank``, so each rank's pool (which holds that rank's
    own fakes) makes its own random draws."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return seed + 1000 * dist.get_rank()
    return seed


def set_requires_grad(nets: Iterable[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


#: What an optimiser's param groups say about how it computes, not what: this process's speed
#: settings decide them, whatever the checkpoint it resumes from was written with.
HOW_ADAM_RUNS = ("fused", "capturable", "foreach")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping how it runs (:data:`HOW_ADAM_RUNS`) and, where
    it already holds state, the very tensors it holds, into which the loaded values are copied: a
    step captured as a CUDA graph updates those tensors and no others."""
    how = [{key: group[key] for key in HOW_ADAM_RUNS if key in group} for group in optimizer.param_groups]
    held = {p: dict(s) for p, s in optimizer.state.items()}
    optimizer.load_state_dict(state)
    for group, kept in zip(optimizer.param_groups, how):
        group.update(kept)
        on_device = bool(group.get("capturable") or group.get("fused"))
        for p in group["params"]:
            loaded = optimizer.state.get(p, {})
            for key, value in loaded.items():
                if key == "step":  # fused and capturable Adam count on the device, plain Adam on the host
                    value = value.to(p.device if on_device else "cpu", torch.float32)
                old = held.get(p, {}).get(key)
                if torch.is_tensor(old) and torch.is_tensor(value) and old.shape == value.shape:
                    with torch.no_grad():
                        value = old.copy_(value)
                loaded[key] = value


class Method:
    """The interface a training method implements. Subclasses register in ``cgbench.methods``."""

    name: ClassVar[str]
    #: The loss terms it records, in order, each logged as ``loss/<term>``.
    terms: ClassVar[tuple[str, ...]]
    #: True: the trainer feeds (label map, photo) of the same scene, same crop and flip (pix2pix).
    paired: ClassVar[bool] = False
    #: False: its step uses views into its networks that DistributedDataParallel cannot wrap.
    supports_ddp: ClassVar[bool] = True
    #: What its step can do, for the speed layer to use (:data:`cgbench.speed.CAPABILITIES`).
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: Its normalisation when ``norm=auto``, and the ones it can build.
    default_norm: ClassVar[str] = "instance"
    norms: ClassVar[tuple[str, ...]] = ("instance",)

    def __init__(self, config: Config, device: torch.device):
        self.config = config
        self.device = device
        self.norm = self.norm_for(config)
        self.speed = resolve_speed(config, device, self.capabilities)
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.pools: dict[str, ImagePool] = {}
        self.halves = Halves(self.speed.parallel_halves)

    @classmethod
    def norm_for(cls, config: Config) -> str:
        """The normalisation it builds for ``config`` (checked before anything is built or recorded)."""
        norm = cls.default_norm if config.norm == "auto" else config.norm
        if norm not in cls.norms:
            raise ConfigError(f"method {cls.name!r} builds {' or '.join(cls.norms)} norm only, not {norm}; "
                              "drop --set norm=...")
        return norm

    def adam(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        """The paper's optimiser, Adam(lr, β1, β2), fused when the speed settings say so, and
        capturable (its step count on the device) when its step is captured as a CUDA graph."""
        c = self.config
        return torch.optim.Adam(params, lr=c.lr, betas=(c.beta1, c.beta2), fused=self.speed.fused_adam or None,
                                capturable=self.speed.cuda_graphs)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Where a step's forward passes run: bf16 autocast when ``amp=bf16`` was asked for, else
        plain fp32. Every method marks its forward passes with it, so a precision applies to every
        method the same way; backward passes and optimiser steps stay outside. (Under CUDA graphs
        autocast must not cache its casts: a cached cast would outlive the capture.)"""
        if self.speed.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=not self.speed.cuda_graphs)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One iteration on labels ``x`` (domain X) and photos ``y`` (domain Y), both in [-1, 1]."""
        raise NotImplementedError

    # A method that declares GRAPH_SAFE_STEP runs its train_step as these three parts, and the speed
    # layer may replay the two steps as CUDA graphs (cgbench.graphs): so the steps keep their shapes,
    # draw no random numbers and never wait for the device (no .item()), and the pools' random
    # choice happens between them, on the host.

    def generator_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                         dict[str, torch.Tensor]]:
        """The generators' step (forward, losses, backward, optimiser step): its loss terms, and
        this step's fakes (detached) by the name of the pool each goes to."""
        raise NotImplementedError

    def query_pools(self, fakes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The images the discriminators judge: each pool's answer to this step's fake."""
        return {name: self.pools[name].query(fake) for name, fake in fakes.items()}

    def discriminator_step(self, x: torch.Tensor, y: torch.Tensor,
                           pooled: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The discriminators' step on the real images and the pooled fakes: its loss terms."""
        raise NotImplementedError

    def recorded(self, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What train_step returns: every term the method records, in order, detached."""
        return {term: terms[term].detach() for term in self.terms}

    def labels_to_photo(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def photo_to_labels(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_tags(self) -> dict[str, str]:
        """Run tags (without the ``cgbench.`` prefix) set when a new run of this method is created."""
        return {"norm": self.norm}

    def probe(self, image: torch.Tensor) -> None:
        """Run every network on ``image`` (1, 3, S, S); raise RuntimeError if one cannot take it.

        Methods whose networks take other inputs (pairs, latent codes) override this."""
        for name, net in self.networks.items():
            out = net(image)
            if out.shape[-1] < 1 or out.shape[-2] < 1:
                raise RuntimeError(name)

    def samples(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows of the sample grid: named image batches in [-1, 1]."""
        fake_y, fake_x = self.labels_to_photo(x), self.photo_to_labels(y)
        return {"x": x, "G(x)": fake_y, "y": y, "F(y)": fake_x}

    def train(self, mode: bool = True) -> None:
        for net in self.networks.values():
            net.train(mode)

    def state_dict(self) -> dict[str, Any]:
        return {
            "networks": {k: v.state_dict() for k, v in self.networks.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "pools": {k: v.state_dict() for k, v in self.pools.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a checkpoint in place: into the networks' parameters and the optimisers' state
        tensors (:func:`load_optimizer_state`), so a captured step goes on with the loaded values."""
        for k, net in self.networks.items():
            net.load_state_dict(state["networks"][k])
        for k, opt in self.optimizers.items():
            load_optimizer_state(opt, state["optimizers"][k])
        for k, pool in self.pools.items():
            pool.load_state_dict(state["pools"][k], self.device)

    def load_translators(self, networks: dict[str, dict[str, torch.Tensor]]) -> None:
        """Load only the networks (for evaluation)."""
        for k, net in self.networks.items():
            if k in networks:
                net.load_state_dict(networks[k])


class TwoWayGAN(Method):
    """Two mappings, G: X→Y and F: Y→X, each with its discriminator (D_Y judges photos, D_X label
    maps); one Adam for both generators and one for both discriminators — CycleGAN's layout,
    shared by the methods that use its networks and training details. By default the networks are
    CycleGAN's ResNet generator and 70x70 PatchGAN; a subclass may build others."""

    capabilities = frozenset({SHARED_DISCRIMINATOR_LOSS})

    def __init__(self, config: Config, device: torch.device):
        super().__init__(config, device)
        self.G, self.F = self.build_generator(), self.build_generator()
        self.D_Y, self.D_X = self.build_discriminator(), self.build_discriminator()
        self.networks = {"G": self.G, "F": self.F, "D_X": self.D_X, "D_Y": self.D_Y}
        self.optimizers = {
            "G": self.adam(itertools.chain(self.G.parameters(), self.F.parameters())),
            "D": self.adam(itertools.chain(self.D_X.parameters(), self.D_Y.parameters())),
        }
        self.gan_loss = GANLoss(config.gan_mode)

    def build_generator(self) -> nn.Module:
        c = self.config
        return init_weights(ResnetGenerator(3, 3, c.ngf, c.n_blocks, upsample=c.upsample), c.init_gain).to(self.device)

    def build_discriminator(self) -> nn.Module:
        c = self.config
        return init_weights(PatchDiscriminator(3, c.ndf, c.n_layers_d), c.init_gain).to(self.device)

    def discriminator_loss(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """½ (L(D(real), real) + L(D(fake), fake)); the fake is detached from its generator.

        With ``batched_discriminator`` real and fake go through D as one batch: instance norm keeps
        the images independent, so the scores are those of two passes, at half the kernel launches."""
        if not self.speed.batched_discriminator:
            return 0.5 * (self.gan_loss(D(real), True) + self.gan_loss(D(fake.detach()), False))
        scores = D(torch.cat([real, fake.detach()]))
        return 0.5 * (self.gan_loss(scores[: len(real)], True) + self.gan_loss(scores[len(real) :], False))

    def labels_to_photo(self, x: torch.Tensor) -> torch.Tensor:
        return self.G(x)

    def photo_to_labels(self, y: torch.Tensor) -> torch.Tensor:
        return self.F(y)
