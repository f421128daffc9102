"""The evaluation protocol's vocabulary, in one place: directions, metric names and keys, the
rows that are not trained methods, and the two image resizes the protocol allows.

Everything that writes or reads a score (the scoring engine, the FCN's ceiling, the sweep, the
report) takes its names from here, so a key cannot drift between the writer and the reader.
(docs/protocol.md#the-evaluation-protocol; the paper's numbers live in :mod:`cgbench.report.paper`.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cgbench.data.labels import colors_to_train_ids

DIRECTIONS: tuple[str, ...] = ("labels2photo", "photo2labels")
"""labels2photo: G maps colour label maps to photos (FCN score); photo2labels: F maps photos to
colour label maps (scored by nearest train-class colour)."""
DIRECTION_NAMES: dict[str, str] = {"labels2photo": "labels→photo", "photo2labels": "photo→labels"}

SCORE_METRICS: tuple[str, ...] = ("per_pixel_acc", "per_class_acc", "class_iou")
METRIC_NAMES: dict[str, str] = {
    "per_pixel_acc": "Per-pixel acc.",
    "per_class_acc": "Per-class acc.",
    "class_iou": "Class IoU",
}

DISTANCE_METRICS: tuple[str, ...] = ("fid", "kid_mean", "kid_std", "fd_fcn")
"""labels→photo: distances of the generated photos to the real validation photos, lower is better
(the fid, kid and fd-fcn evaluators; keys ``eval/labels2photo/<metric>``)."""
RANKED_DISTANCES: tuple[str, ...] = ("fid", "kid_mean", "fd_fcn")
"""The distances a row is ranked by and the report shows as columns (kid_std, the spread of KID
over its subsets, only in the CSV)."""
DISTANCE_NAMES: dict[str, str] = {"fid": "FID", "kid_mean": "KID", "kid_std": "KID std", "fd_fcn": "FD-FCN"}

EVAL_PREFIX = "eval"
GROUND_TRUTH_PREFIX = f"{EVAL_PREFIX}/ground_truth"
"""Real validation photos through the evaluator FCN: the ceiling of the FCN score."""
LADDER_PREFIX = f"{EVAL_PREFIX}/ladder"
"""Real validation photos, damaged step by step, through the evaluator FCN (cgbench.scoring.ladder)."""

TAG_PREFIX = "cgbench."


class Tags:
    """The names of cgbench's run tags, all under :data:`TAG_PREFIX`: every writer and reader of a
    tag takes its name from here. Families named by a part only known at run time are built by
    the static methods below."""

    # What a run is and which table row it fills.
    METHOD = "cgbench.method"  # a training method, or FCN_METHOD, NULL_METHOD, EXTERNAL_METHOD, ...
    ROW = "cgbench.row"
    ABLATION = "cgbench.ablation"
    SEED = "cgbench.seed"
    PRESET = "cgbench.preset"
    NORM = "cgbench.norm"  # the generators' normalisation (Method.extra_tags)
    FEATURE_WEIGHTS = "cgbench.feature_weights"  # feature-gan: where its fixed features came from
    PRECISION = "cgbench.precision"  # fp32 or bf16 forward passes
    # Its data.
    DATASET = "cgbench.dataset"
    DATASET_DIGEST = "cgbench.dataset_digest"  # the training split
    DATASET_LAYOUT = "cgbench.dataset_layout"
    VAL_DIGEST = "cgbench.val_digest"  # the validation split beside the training data; eval checks it
    DATA_ROOT = "cgbench.data_root"  # the dataset folder the run read (absolute); eval scores its val split
    DATA_MOVED_FROM = "cgbench.data_moved_from"  # the folder before the last `run --resume --data NEW`
    IMAGE_SIZE = "cgbench.image_size"
    PREP = "cgbench.prep"
    # How it ran.
    CODE_VERSION = "cgbench.code_version"
    WORLD_SIZE = "cgbench.world_size"  # processes the run trains on; resuming needs as many
    DDP_WEIGHT_DIGESTS = "cgbench.ddp_weight_digests"  # per rank, the 12-hex prefix of its weights' sha256
    FAILURE = "cgbench.failure"  # why the run failed
    # The evaluator FCN.
    FCN_ARCH = "cgbench.fcn_arch"
    FCN_LADDER_FALLS = "cgbench.fcn.ladder_falls"
    FCN_LADDER_FLAT = "cgbench.fcn.ladder_flat"
    # Scores.
    EVAL_VAL_DIGEST = "cgbench.eval.val_digest"
    EVAL_ALLOW_OTHER_VAL = "cgbench.eval.allow_other_val"
    SOURCE = "cgbench.source"  # an external row: images or checkpoint
    DIRECTION = "cgbench.direction"
    # Sweeps.
    SWEEP = "cgbench.sweep"  # on a child: its sweep's parent run
    SWEEP_KEY = "cgbench.sweep_key"
    SPEC = "cgbench.spec"
    SEEDS = "cgbench.seeds"
    TABLES = "cgbench.tables"
    FCN_RUN = "cgbench.fcn_run"
    # Reports.
    REPORT_SOURCE = "cgbench.report.source"
    REPORT_TABLES = "cgbench.report.tables"
    REPORT_RUNS = "cgbench.report.runs"
    REPORT_SWEEP = "cgbench.report.sweep"

    @staticmethod
    def named(name: str) -> str:
        """``cgbench.<name>``: tags a method, the speed settings (``speed.<setting>``) or an external
        source (its details) name themselves."""
        return TAG_PREFIX + name

    @staticmethod
    def package(name: str) -> str:
        """The version of package ``name`` the run ran with: ``cgbench.pkg.<name>``."""
        return f"{TAG_PREFIX}pkg.{name}"

    @staticmethod
    def eval_classes(evaluator: str) -> str:
        """The classes evaluator ``evaluator`` scored: ``cgbench.eval.<evaluator>.classes``."""
        return f"{TAG_PREFIX}eval.{evaluator}.classes"

    @staticmethod
    def eval_fcn(evaluator: str) -> str:
        """The FCN evaluator ``evaluator`` segmented with: ``cgbench.eval.<evaluator>.fcn``."""
        return f"{TAG_PREFIX}eval.{evaluator}.fcn"

# What a run is, by its ``cgbench.method`` tag, when it is not a training method.
FCN_METHOD = "fcn"  # the evaluator FCN (cgbench fcn train)
NULL_METHOD = "null"  # a translator that learned nothing (the floor)
EXTERNAL_METHOD = "external"  # images or a checkpoint made outside cgbench
SWEEP_METHOD = "sweep"  # the parent run of a sweep
REPORT_METHOD = "report"  # the files of a report
BENCH_METHOD = "bench"  # cgbench bench --log-mlflow

#: The null translators of each direction, by their table row (the CSV's ``row`` column).
NULL_ROWS: dict[str, tuple[str, ...]] = {
    "labels2photo": ("null-identity", "null-mean-photo", "null-random-photo"),
    "photo2labels": ("null-majority-labels", "null-random-labels"),
}
NULL_ROW_NAMES: dict[str, str] = {
    "null-identity": "Null: the label map as the photo",
    "null-mean-photo": "Null: the mean training photo",
    "null-random-photo": "Null: a photo of another scene",
    "null-majority-labels": "Null: the majority label map",
    "null-random-labels": "Null: the label map of another scene",
}


def metric_prefix(direction: str) -> str:
    """Where the scores of ``direction`` live in a run: ``eval/<direction>``."""
    return f"{EVAL_PREFIX}/{direction}"


def metric_key(direction: str, metric: str) -> str:
    """The MLflow key of one score, e.g. ``eval/labels2photo/class_iou``."""
    return f"{metric_prefix(direction)}/{metric}"


def upsample(images: torch.Tensor, hw: tuple[int, int] | torch.Size) -> torch.Tensor:
    """uint8 images (B, 3, h, w) resized bilinearly to ``hw``, as float in [0, 255].

    The protocol's one resize of generated images: up to the ground-truth label resolution (the
    labels themselves are never resized)."""
    x = images.float()
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False)


def segmenter_input(photos: torch.Tensor, hw: tuple[int, int] | torch.Size) -> torch.Tensor:
    """What the evaluator FCN sees: uint8 photos at the generator resolution (B, 3, S, S),
    resized bilinearly to ``hw`` and scaled to [-1, 1]. Used both to train the FCN on real photos
    and to score generated ones, so the two see the same degradation."""
    return upsample(photos, hw).div_(127.5).sub_(1.0)


def fcn_predict(model: torch.nn.Module, outputs: torch.Tensor, hw: tuple[int, int] | torch.Size) -> torch.Tensor:
    """labels→photo: train ids (B, H, W) at the label resolution ``hw`` of generated uint8 photos
    (B, 3, S, S), resized up to ``hw`` and segmented by the evaluator FCN ``model``."""
    return model(segmenter_input(outputs, hw)).argmax(1)


def colour_predict(outputs: torch.Tensor, hw: tuple[int, int] | torch.Size) -> torch.Tensor:
    """photo→labels: train ids (B, H, W) at the label resolution ``hw`` of generated uint8 colour
    label images, resized up to ``hw``, each pixel decoded to the nearest train-class colour."""
    return colors_to_train_ids(upsample(outputs, hw), void=False)
