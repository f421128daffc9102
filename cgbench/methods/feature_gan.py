"""Feature loss + GAN: SimGAN with the self-regularisation taken on deep features.

    L = L_GAN(G, D_Y) + L_GAN(F, D_X) + λ_self (‖φ(x) − φ(G(x))‖₁ + ‖φ(y) − φ(F(y))‖₁)

with φ the relu4_2 activations of a fixed VGG-16 (:mod:`cgbench.models.vgg`); everything else
is SimGAN's, i.e. CycleGAN's networks and training details, ``lambda_self`` = 10.

The paper's φ is ImageNet-pretrained, which cannot be downloaded here. ``feature_weights=PATH``
loads a torchvision VGG-16 state dict from a file (tagged ``cgbench.feature_weights`` =
``sha256:<first 16 hex digits of the file's digest>``); without it φ is a fixed VGG-16 randomly
initialised from ``seed``, and the run is tagged ``cgbench.feature_weights=random`` so the report
can footnote the row. It is never silently replaced.

φ is no part of the checkpoint (it is fixed): it is built when a run starts (a missing or
unfitting file fails then, in one line, before the run is recorded) or on the first training
step of a resumed run; evaluation, which needs only G and F, never builds it.
"""

from __future__ import annotations

import torch

from cgbench.config import Config
from cgbench.methods.simgan import SelfRegularised
from cgbench.models.vgg import VGGFeatures


class FeatureGAN(SelfRegularised):
    """Feature loss + GAN: GAN + λ_self·‖φ(x) − φ(G(x))‖₁ on VGG-16 relu4_2 features, no cycle."""

    name = "feature-gan"

    def __init__(self, config: Config, device: torch.device):
        super().__init__(config, device)
        self._features: VGGFeatures | None = None

    @property
    def features(self) -> VGGFeatures:
        """The fixed feature extractor φ, built on first use."""
        if self._features is None:
            self._features = VGGFeatures(self.config.feature_weights, seed=self.config.seed).to(self.device)
        return self._features

    def extra_tags(self) -> dict[str, str]:
        return {**super().extra_tags(), "feature_weights": self.features.source}

    def self_distance(self, source: torch.Tensor, translated: torch.Tensor) -> torch.Tensor:
        """‖φ(source) − φ(translated)‖₁ (mean over feature elements); φ fixed, gradients reach the generator."""
        phi = self.features
        with torch.no_grad():
            target = phi(source)
        return (phi(translated) - target).abs().mean()
