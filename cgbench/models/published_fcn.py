"""The published evaluation network of the CycleGAN and pix2pix papers, in PyTorch.

The FCN scores in both papers come from one Caffe model, ``fcn-8s-cityscapes.caffemodel``, whose
geometry is given by the authors' public ``deploy.prototxt``. :class:`PublishedFCN8s` rebuilds that
geometry layer for layer, under the Caffe layer names, so the weights of the ``.caffemodel`` (read by
:mod:`cgbench.models.caffemodel`) land in it one blob per tensor:

* the VGG-16 trunk ``conv1_1`` … ``conv5_3``: 3×3 convolutions, stride 1, ``conv1_1`` padded by 100
  and every other by 1, a ReLU after each, and a 2×2 stride-2 max-pool after each block, rounded up
  as Caffe rounds (``ceil_mode``);
* ``fc6_cs`` (7×7 to 4096, no padding) and ``fc7_cs`` (1×1 to 4096), a ReLU after each (their
  dropout is inert at test time);
* ``score_fr``, a 1×1 convolution to 20 outputs (the 19 train classes and a 20th the public script
  does not expect: see :mod:`evaluators.published_fcn`);
* three learned transposed convolutions without bias, ``upscore2`` (4×4, stride 2),
  ``upscore_pool4`` (4×4, stride 2) and ``upscore8`` (16×16, stride 8), fused with ``score_pool4``
  (1×1 on pool4, cropped at offset 5) and ``score_pool3`` (1×1 on pool3, cropped at offset 9), and
  the final crop at offset 31 back to the input's size.

Input: BGR images minus :data:`BGR_MEAN`, on 0-255 values (:func:`preprocess`), any size.
Output: ``(N, 20, H, W)`` scores at the input's size.

The channel widths are the published ones by default (VGG-16's 64…512 and 4096 in ``fc6_cs`` and
``fc7_cs``); tests build the same geometry, layer names, kernels, pads and crops with narrower
widths so that a whole file in the published layout can be written and checked in a second.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "BGR_MEAN", "FC_WIDTH", "NUM_OUTPUTS", "TRUNK_WIDTHS",
    "PublishedFCN8s", "caffe_crop", "channels_first", "preprocess",
]

NUM_OUTPUTS = 20
BGR_MEAN = (72.78044, 83.21195, 73.45286)  # the public script's mean, in BGR order, on 0-255 values

TRUNK_WIDTHS = (64, 128, 256, 512, 512)  # output channels of VGG-16's blocks 1-5
FC_WIDTH = 4096  # outputs of fc6_cs and fc7_cs
_LAYERS = (2, 2, 3, 3, 3)  # convolutions per block


def caffe_crop(x: torch.Tensor, offset: int, height: int, width: int) -> torch.Tensor:
    """Caffe's ``Crop`` layer on the two spatial axes: ``x[..., offset:offset+height, offset:offset+width]``."""
    if x.shape[-2] < offset + height or x.shape[-1] < offset + width:
        raise ValueError(f"cannot crop {height}x{width} at offset {offset} from {tuple(x.shape[-2:])}")
    return x[..., offset:offset + height, offset:offset + width]


def channels_first(images_uint8: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` or ``(N, H, W, 3)`` uint8 images as ``(N, 3, H, W)`` (3 in dimension 1 wins).

    Anything but uint8 is refused: the network expects 0-255 values, and a [-1, 1] or [0, 1] float
    image would be scored silently as a nearly black one.
    """
    shape = tuple(images_uint8.shape)
    if images_uint8.dtype != torch.uint8 or len(shape) != 4 or 3 not in (shape[1], shape[-1]):
        raise ValueError(f"expected (N, 3, H, W) or (N, H, W, 3) uint8 RGB images, got {shape} {images_uint8.dtype}")
    return images_uint8 if shape[1] == 3 else images_uint8.permute(0, 3, 1, 2)


def preprocess(images_uint8: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` or ``(N, H, W, 3)`` RGB uint8 → the network's input: BGR float minus the mean."""
    bgr = channels_first(images_uint8).flip(1).float()
    mean = torch.tensor(BGR_MEAN, dtype=bgr.dtype, device=bgr.device).view(1, 3, 1, 1)
    return bgr - mean


class PublishedFCN8s(nn.Module):
    """FCN-8s with the layer names, shapes and crops of ``fcn-8s-cityscapes`` (see the module doc)."""

    def __init__(self, trunk_widths: tuple[int, ...] = TRUNK_WIDTHS, fc_width: int = FC_WIDTH) -> None:
        super().__init__()
        if len(trunk_widths) != len(_LAYERS):
            raise ValueError(f"trunk_widths needs one width per VGG-16 block (5), got {trunk_widths}")
        cin = 3
        for block, (layers, cout) in enumerate(zip(_LAYERS, trunk_widths), start=1):
            for i in range(1, layers + 1):
                pad = 100 if (block, i) == (1, 1) else 1
                self.add_module(f"conv{block}_{i}", nn.Conv2d(cin, cout, 3, padding=pad))
                cin = cout
        self.fc6_cs = nn.Conv2d(trunk_widths[4], fc_width, 7)
        self.fc7_cs = nn.Conv2d(fc_width, fc_width, 1)
        self.score_fr = nn.Conv2d(fc_width, NUM_OUTPUTS, 1)
        self.upscore2 = nn.ConvTranspose2d(NUM_OUTPUTS, NUM_OUTPUTS, 4, stride=2, bias=False)
        self.score_pool4 = nn.Conv2d(trunk_widths[3], NUM_OUTPUTS, 1)
        self.upscore_pool4 = nn.ConvTranspose2d(NUM_OUTPUTS, NUM_OUTPUTS, 4, stride=2, bias=False)
        self.score_pool3 = nn.Conv2d(trunk_widths[2], NUM_OUTPUTS, 1)
        self.upscore8 = nn.ConvTranspose2d(NUM_OUTPUTS, NUM_OUTPUTS, 16, stride=8, bias=False)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.relu = nn.ReLU(inplace=True)

    def _block(self, x: torch.Tensor, block: int, layers: int) -> torch.Tensor:
        for i in range(1, layers + 1):
            x = self.relu(getattr(self, f"conv{block}_{i}")(x))
        return self.pool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pools = {}
        h = x
        for block, layers in enumerate(_LAYERS, start=1):
            h = pools[block] = self._block(h, block, layers)
        h = self.relu(self.fc6_cs(h))
        h = self.relu(self.fc7_cs(h))
        up2 = self.upscore2(self.score_fr(h))
        fuse4 = up2 + caffe_crop(self.score_pool4(pools[4]), 5, *up2.shape[-2:])
        up4 = self.upscore_pool4(fuse4)
        fuse3 = up4 + caffe_crop(self.score_pool3(pools[3]), 9, *up4.shape[-2:])
        return caffe_crop(self.upscore8(fuse3), 31, height, width)
