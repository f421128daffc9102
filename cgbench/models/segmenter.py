"""The evaluator network behind the FCN score (CycleGAN paper, Table 2; pix2pix, Table 1).

The paper scores generated photos with an FCN-8s (Long et al.) trained on real Cityscapes photos.
:class:`FCN8s` keeps that design — a VGG-like backbone, score heads on pool3, pool4 and the
stride-32 features, and the 2× / 2× / 8× skip-fusion upsampling — at a size that trains and runs
on a CPU at the generator's resolution (64–256 px). ``build_segmenter("fcn_resnet50")`` gives the
torchvision FCN with a ResNet-50 backbone, randomly initialised: nothing is ever downloaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation import fcn_resnet50

from cgbench.errors import CgbenchError

__all__ = ["FCN8s", "SEGMENTER_ARCHS", "build_segmenter"]

SEGMENTER_ARCHS = ("fcn8s", "fcn_resnet50")


def _conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


def _stage(in_ch: int, out_ch: int) -> nn.Sequential:
    """One VGG stage: (conv 3×3 – BN – ReLU) × 2, then a 2×2 max-pool (stride doubles)."""
    return nn.Sequential(
        *_conv_bn_relu(in_ch, out_ch), *_conv_bn_relu(out_ch, out_ch), nn.MaxPool2d(2)
    )


def _bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Per-channel bilinear upsampling kernel, the FCN initialisation of its deconvolutions."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(kernel_size, dtype=torch.float32) - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = ramp[:, None] * ramp[None, :]
    return weight


class FCN8s(nn.Module):
    """FCN-8s for small images: per-pixel class logits at the input resolution.

    Backbone: five VGG stages (widths ``w, 2w, 4w, 4w, 4w``), each halving the resolution, then a
    3×3 and a 1×1 conv (the fc6/fc7 analogue, ``8w`` channels) at stride 32. Heads: 1×1 class
    scores on the stride-32 features, pool4 and pool3, fused FCN-8s style: score32 ↑2 + pool4
    score, ↑2 + pool3 score, ↑8. Upsampling is by transposed convolutions initialised to bilinear
    interpolation and learned.

    Input: ``(N, 3, H, W)`` images (e.g. in the generator's [-1, 1] range), any ``H, W >= 32``;
    sizes not divisible by 32 are reflect-padded internally and the logits cropped back.
    Output: ``(N, num_classes, H, W)`` logits.
    """

    stride = 32

    def __init__(self, num_classes: int = 19, width: int = 32) -> None:
        super().__init__()
        chans = (width, 2 * width, 4 * width, 4 * width, 4 * width)
        self.to_pool3 = nn.Sequential(
            _stage(3, chans[0]), _stage(chans[0], chans[1]), _stage(chans[1], chans[2])
        )
        self.to_pool4 = _stage(chans[2], chans[3])
        self.to_pool5 = _stage(chans[3], chans[4])
        self.fc = nn.Sequential(
            *_conv_bn_relu(chans[4], 8 * width), *_conv_bn_relu(8 * width, 8 * width, 1)
        )
        self.score_fr = nn.Conv2d(8 * width, num_classes, 1)
        self.score_pool4 = nn.Conv2d(chans[3], num_classes, 1)
        self.score_pool3 = nn.Conv2d(chans[2], num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(
            num_classes, num_classes, 4, stride=2, padding=1, bias=False
        )
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, padding=4, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.ConvTranspose2d):
                with torch.no_grad():
                    m.weight.copy_(_bilinear_kernel(m.in_channels, m.kernel_size[0]))
        # Score heads start at zero, as in FCN: training begins from uniform class predictions.
        for head in (self.score_fr, self.score_pool4, self.score_pool3):
            nn.init.zeros_(head.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height < self.stride or width < self.stride:
            raise ValueError(f"FCN8s needs images of at least 32×32 pixels, got {height}×{width}")
        pad_h, pad_w = -height % self.stride, -width % self.stride
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        score = self.score_fr(self.fc(self.to_pool5(pool4)))
        score = self.upscore2(score) + self.score_pool4(pool4)
        score = self.upscore_pool4(score) + self.score_pool3(pool3)
        return self.upscore8(score)[..., :height, :width]


class _OutLogits(nn.Module):
    """Wraps a torchvision segmentation model so ``forward`` returns its ``"out"`` logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def build_segmenter(arch: str, num_classes: int = 19, width: int = 32) -> nn.Module:
    """The evaluator network by name; randomly initialised, never downloads weights.

    Args:
        arch: ``"fcn8s"`` (:class:`FCN8s`, CPU-sized) or ``"fcn_resnet50"`` (torchvision's FCN
            with a ResNet-50 backbone, no pretrained weights; ``width`` is unused).
        num_classes: number of output channels (19 Cityscapes train classes; no extra channel).
        width: base channel width of :class:`FCN8s`.

    Returns:
        A module mapping ``(N, 3, H, W)`` images to ``(N, num_classes, H, W)`` logits.
    """
    if arch == "fcn8s":
        return FCN8s(num_classes=num_classes, width=width)
    if arch == "fcn_resnet50":
        model = fcn_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
        return _OutLogits(model)
    raise CgbenchError(f"unknown segmenter {arch!r}; choose one of: {', '.join(SEGMENTER_ARCHS)}")
