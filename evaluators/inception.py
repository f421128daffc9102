"""FID and KID (labels→photo): G's photos against the real validation photos, in Inception features.

The numbers image-to-image papers report beside the FCN score. Both are torchmetrics' own
computations (:class:`~torchmetrics.image.fid.FrechetInceptionDistance` and
:class:`~torchmetrics.image.kid.KernelInceptionDistance`) on the 2048-d pool features of
torchmetrics' ``NoTrainInceptionV3`` — torch-fidelity's port of the TensorFlow FID Inception —
with ``antialias=False``: images are resized to 299×299 the way TensorFlow 1 did, the setting
whose numbers compare with published FID. The generated photos are the uint8 images at the
generator resolution S (what ``--save-images`` writes); the real ones are the validation photos at
S, resized there as training photos are. Both resolutions go up to 299 the same way.

The Inception weights cannot be downloaded here: the user names the local file
``weights-inception-2015-12-05-6726825d.pth`` with ``cgbench eval --set inception_weights=PATH``
or ``$CGBENCH_INCEPTION_WEIGHTS``. Without it the evaluators refuse in one line before any work;
they never fall back to other weights. The file is read with ``weights_only=True``.

photo→labels has no FID: a label map is not a photo, so these evaluators score labels→photo only.
With both selected, the network is loaded once and every image goes through it once
(:meth:`EvalContext.shared`).
"""

from __future__ import annotations

import io
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cgbench.errors import CgbenchError, DataError
from cgbench.models.vgg import file_digest
from cgbench.plugins import Batch, EvalContext, Evaluator, Result

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
OPTION = "inception_weights"
ENV = "CGBENCH_INCEPTION_WEIGHTS"
FEATURES = 2048  # the pool3 features FID and KID are defined on
KID_SUBSETS = 100  # torchmetrics' and torch-fidelity's default
KID_SUBSET_SIZE = 1000  # the same; never more than the split has
KID_SEED = 0  # the subsets are drawn with this seed, so a score is reproducible
#: Where torch-fidelity downloads the file from (its URL_INCEPTION_V3); named, never fetched.
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"
HOW_TO_GET_IT = (f"download {WEIGHTS_URL} on a machine with internet and give the file with "
                 f"--set {OPTION}=PATH (or ${ENV}=PATH)")

__all__ = ["FID", "KID", "InceptionFeatures", "kernel_inception_distance", "load_inception", "weights_path"]


def weights_path(options: dict[str, str]) -> Path:
    """The Inception weights file named by ``--set inception_weights`` or ``$CGBENCH_INCEPTION_WEIGHTS``."""
    value = options.get(OPTION) or os.environ.get(ENV)
    if not value:
        raise CgbenchError(f"FID and KID need the Inception weights file {WEIGHTS_FILE}, which cannot be "
                           f"downloaded here: {HOW_TO_GET_IT}")
    path = Path(value).expanduser()
    if not path.is_file():
        raise CgbenchError(f"the Inception weights file {path} does not exist (FID and KID need {WEIGHTS_FILE}): "
                           f"{HOW_TO_GET_IT}")
    return path


def load_inception(path: Path, device: torch.device) -> nn.Module:
    """torchmetrics' FID Inception (2048-d pool features, ``antialias=False``) with the weights in
    ``path``, in eval mode on ``device``. Nothing is downloaded."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CgbenchError(f"cannot read {path} as a PyTorch state dict with weights_only=True "
                           f"({type(exc).__name__}); FID and KID need {WEIGHTS_FILE}: {HOW_TO_GET_IT}") from None
    # torch-fidelity reads the file it is given with weights_only=False: it gets the tensors just
    # read safely, serialised again in memory, never the user's file.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(FEATURES)],
                                 feature_extractor_weights_path=buffer, antialias=False)
    except (RuntimeError, TypeError, AttributeError):  # load_state_dict: missing, unexpected or misshapen tensors
        raise CgbenchError(f"{path} does not hold the FID Inception's weights (its tensors do not match "
                           f"torch-fidelity's InceptionV3); FID and KID need {WEIGHTS_FILE}: {HOW_TO_GET_IT}") from None
    return net.to(device)


class InceptionFeatures:
    """The Inception of one scoring pass, with the features of the real validation photos and of
    the last batch of generated ones (FID and KID see the same batch one after the other)."""

    def __init__(self, path: Path, context: EvalContext):
        self.path, self.sha256 = path, file_digest(path)
        self.context = context
        self.net = load_inception(path, context.device)
        self._real: torch.Tensor | None = None
        self._last: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 2048) float64 features of uint8 RGB images (B, 3, h, w), on the context's device."""
        with torch.inference_mode():
            return self.net(images.to(self.context.device)).double()

    def generated(self, batch: Batch) -> torch.Tensor:
        if self._last[0] is not batch.outputs:
            self._last = (batch.outputs, self(batch.outputs))
        return self._last[1]

    def real(self) -> torch.Tensor:
        if self._real is None:
            photos = self.context.split.photos
            self._real = torch.cat([self(chunk) for chunk in photos.split(self.context.batch_size)])
        return self._real

    def details(self) -> dict[str, Any]:
        return {"inception_weights": str(self.path), "inception_weights_sha256": self.sha256,
                "features": f"Inception pool3 ({FEATURES}-d), torchmetrics NoTrainInceptionV3, antialias=False"}


class _Given(nn.Module):
    """torchmetrics' custom-feature hook, given features already computed by the shared Inception."""

    num_features = FEATURES

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class _InceptionEvaluator(Evaluator):
    direction = "labels2photo"
    prefix = "eval/labels2photo"
    options = {OPTION: f"the local file {WEIGHTS_FILE} (default: ${ENV})"}

    def __init__(self, context: EvalContext):
        super().__init__(context)
        n_generated, n_real = len(context.split.labels), len(context.split.photos)
        if min(n_generated, n_real) < 2:
            raise DataError(f"{self.name} compares two sets of images and needs at least 2 of each; the split has "
                            f"{n_generated} label maps and {n_real} photos")
        path = weights_path(context.options)
        self.features: InceptionFeatures = context.shared(f"inception:{path}", lambda: InceptionFeatures(path, context))
        self.n_images = min(n_generated, n_real)

    @classmethod
    def check(cls, options: dict[str, str]) -> None:
        weights_path(options)


class FID(_InceptionEvaluator):
    """labels→photo: the Fréchet Inception distance of G's photos to the real validation photos."""

    name = "fid"
    metrics = ("fid",)
    artifact_dir = "eval/fid"
    description = ("FID (lower is better): G(labels) vs the real val photos, torchmetrics, Inception weights from "
                   f"--set {OPTION}=PATH; labels→photo only (photo→labels is not meaningful)")

    def __init__(self, context: EvalContext):
        super().__init__(context)
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.metric = FrechetInceptionDistance(feature=_Given(), normalize=False).to(context.device)

    def update(self, batch: Batch) -> None:
        t = time.perf_counter()
        features = self.features.generated(batch)
        t = self._tick("inception", t)
        self.metric.update(features, real=False)
        self._tick("statistics", t)

    def compute(self) -> Result:
        t = time.perf_counter()
        real = self.features.real()
        t = self._tick("inception", t)
        self.metric.update(real, real=True)
        value = float(self.metric.compute())
        self._tick("statistics", t)
        return Result({"fid": value}, details=self.features.details())


def kernel_inception_distance(real: torch.Tensor, generated: torch.Tensor, subset_size: int,
                              subsets: int = KID_SUBSETS, seed: int = KID_SEED) -> tuple[float, float]:
    """torchmetrics' KID of two feature sets (n, d): the unbiased MMD² estimator with the cubic
    kernel (x·y / d + 1)³, averaged over ``subsets`` random subsets of ``subset_size`` of each set
    (drawn with ``seed``, so the same features give the same numbers); (mean, std over subsets)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():  # "will save all extracted features": 2048 numbers an image
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Given(), subsets=subsets, subset_size=subset_size)
    metric = metric.to(real.device)
    metric.update(real, real=True)
    metric.update(generated, real=False)
    with torch.random.fork_rng(devices=[]):  # the subsets are drawn with torch's CPU generator
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


class KID(_InceptionEvaluator):
    """labels→photo: the kernel Inception distance (unbiased MMD², cubic kernel) over random subsets."""

    name = "kid"
    metrics = ("kid_mean", "kid_std")
    artifact_dir = "eval/kid"
    description = ("KID mean and std over subsets (lower is better): G(labels) vs the real val photos, "
                   f"torchmetrics, Inception weights from --set {OPTION}=PATH; labels→photo only (photo→labels "
                   "is not meaningful)")

    def __init__(self, context: EvalContext):
        super().__init__(context)
        self.subset_size = min(KID_SUBSET_SIZE, self.n_images)
        self._generated: list[torch.Tensor] = []

    def update(self, batch: Batch) -> None:
        t = time.perf_counter()
        self._generated.append(self.features.generated(batch))
        self._tick("inception", t)

    def compute(self) -> Result:
        t = time.perf_counter()
        real = self.features.real()
        t = self._tick("inception", t)
        mean, std = kernel_inception_distance(real, torch.cat(self._generated), self.subset_size)
        self._tick("statistics", t)
        details = {**self.features.details(), "subsets": KID_SUBSETS, "subset_size": self.subset_size,
                   "seed": KID_SEED, "kernel": f"(x·y / {FEATURES} + 1)^3"}
        return Result({"kid_mean": mean, "kid_std": std}, details=details)
