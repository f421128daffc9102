"""A fixed VGG-16 feature extractor up to relu4_2, for the "Feature loss + GAN" baseline.

Nothing is downloaded: the network is torchvision's VGG-16 convolutional layers through relu4_2
(``vgg16(weights=None).features[:21]``, built without the classifier), then either loaded from a torchvision VGG-16 state dict file (``torch.load``
with ``weights_only=True``; a full ``vgg16`` state dict with keys ``features.N.weight`` or just
the features' ``N.weight``) or left at a fixed random initialisation drawn from a given seed.
Inputs are images in [-1, 1], mapped to [0, 1] and normalised with the ImageNet mean and std
the pretrained weights expect. The extractor is frozen and always in eval mode.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from cgbench.errors import CgbenchError

#: ``features[:RELU4_2]`` of torchvision's vgg16 ends with relu4_2 (conv4_2 is index 19, its ReLU 20).
RELU4_2 = 21
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def file_digest(path: str | Path) -> str:
    """The sha256 of a weights file, read 1 MiB at a time (recorded with what a fixed network used)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16(weights=None).features[:21]`` with its initialisation (Kaiming normal,
    fan-out, zero biases), built without the 120 M-parameter classifier nobody uses here."""
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["D"], batch_norm=False)[:RELU4_2]
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return features


class VGGFeatures(nn.Module):
    """relu4_2 features of VGG-16 for images in [-1, 1]; frozen, eval mode."""

    def __init__(self, weights: str = "", seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # a fixed init that leaves the caller's RNG untouched
            torch.manual_seed(seed)
            self.features = vgg16_features()
        self.source = "random"
        if weights:
            self.features.load_state_dict(_read_state_dict(weights))
            self.source = "sha256:" + file_digest(weights)[:16]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> VGGFeatures:  # fixed: never leaves eval mode
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(((images + 1.0) / 2.0 - self.mean) / self.std)


def _read_state_dict(weights: str) -> dict[str, torch.Tensor]:
    """The relu4_2 part of a torchvision VGG-16 state dict file, renamed for ``features[:21]``."""
    path = Path(weights)
    hint = "give a torchvision vgg16 state dict (torch.save(vgg16().state_dict(), PATH)) or feature_weights=\"\""
    if not path.is_file():
        raise CgbenchError(f"feature_weights file {weights!r} does not exist; {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CgbenchError(f"feature_weights file {weights!r} is not a torch state dict ({type(exc).__name__}); "
                           f"{hint}") from None
    if not isinstance(state, dict):
        raise CgbenchError(f"feature_weights file {weights!r} holds a {type(state).__name__}, not a state dict; {hint}")
    if any(str(k).startswith("features.") for k in state):
        state = {k.removeprefix("features."): v for k, v in state.items() if str(k).startswith("features.")}
    wanted = {f"{i}.{kind}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19) for kind in ("weight", "bias")}
    missing = sorted(wanted - set(state), key=lambda k: int(k.split(".")[0]))
    if missing:
        raise CgbenchError(f"feature_weights file {weights!r} does not fit VGG-16 (missing "
                           f"{', '.join('features.' + k for k in missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                           f"{hint}")
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in vgg16_features().state_dict().items()}
    for key, shape in shapes.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or value.shape != shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise CgbenchError(f"feature_weights file {weights!r} does not fit VGG-16: features.{key} is {got}, "
                               f"expected {tuple(shape)}; {hint}")
    return {k: state[k].float() for k in shapes}
