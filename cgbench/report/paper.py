"""The CycleGAN paper's Cityscapes tables (Zhu et al. 2017), as data.

Values are the paper's as docs/protocol.md#the-papers-tables lists them: per-pixel accuracy,
per-class accuracy and class IoU. A published row keeps its doubt flag: ``"1 source"`` (†, found in
only one transcription of the paper: probable, not certain) or ``"unverified"`` (‡). The flag
stands after the row's last number, so the report puts its footnote mark there too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from cgbench.config import PRESETS, Config
from cgbench.methods.cyclegan import ABLATIONS
from cgbench.protocol import DIRECTION_NAMES as DIRECTIONS
from cgbench.protocol import METRIC_NAMES
from cgbench.protocol import SCORE_METRICS as METRICS

#: Footnote marks for the reference's flags, and their meaning.
FLAGS: dict[str, tuple[str, str]] = {
    "1 source": ("†", "published value found in only one transcription of the paper (probable, not certain)"),
    "unverified": ("‡", "published value unverified"),
}

#: The evaluator's ceiling: real val photos through the same FCN (pix2pix paper, Cityscapes 256×256).
GROUND_TRUTH = (0.80, 0.26, 0.21)
GROUND_TRUTH_NAME = "Ground truth (real photos through the FCN)"

REFERENCE_ROW = "cyclegan"  # the row every other row is tested against


@dataclass(frozen=True)
class PaperRow:
    key: str  # the runs' ``cgbench.row`` tag
    name: str  # the paper's row name
    published: tuple[float, float, float] | None  # per-pixel, per-class, IoU; None: not in the paper
    flag: str | None = None  # a key of FLAGS
    upper_bound: bool = False  # paired supervision: a ceiling, not a competitor


@dataclass(frozen=True)
class PaperTable:
    number: int
    title: str
    direction: str  # "labels2photo" or "photo2labels"
    rows: tuple[PaperRow, ...]
    #: rows shown after the paper's rows, only when there are runs for them
    extra_rows: tuple[PaperRow, ...] = field(default=())

    @property
    def ablation(self) -> bool:
        return self.number in (4, 5)


def _baselines(values: dict[str, tuple[tuple[float, float, float], str | None]]) -> tuple[PaperRow, ...]:
    names = [("cogan", "CoGAN"), ("bigan", "BiGAN/ALI"), ("simgan", "SimGAN"),
             ("feature-gan", "Feature loss + GAN"), ("cyclegan", "CycleGAN"), ("pix2pix", "pix2pix")]
    return tuple(PaperRow(k, n, values[k][0], values[k][1], upper_bound=(k == "pix2pix")) for k, n in names)


def _ablations(values: dict[str, tuple[tuple[float, float, float], str | None]]) -> tuple[PaperRow, ...]:
    """The paper's ablation rows, named as the ablation table names them (cgbench.methods.cyclegan)."""
    return tuple(PaperRow(k, ABLATIONS[k].paper_row, published, flag) for k, (published, flag) in values.items())


_IDENTITY = (PaperRow("identity", ABLATIONS["identity"].paper_row, None),)

TABLES: dict[int, PaperTable] = {
    2: PaperTable(2, "FCN scores, labels→photo: baselines", "labels2photo", _baselines({
        "cogan": ((0.40, 0.10, 0.06), "1 source"),
        "bigan": ((0.19, 0.06, 0.02), "unverified"),
        "simgan": ((0.20, 0.10, 0.04), "unverified"),
        "feature-gan": ((0.06, 0.04, 0.01), "unverified"),
        "cyclegan": ((0.52, 0.17, 0.11), None),
        "pix2pix": ((0.71, 0.25, 0.18), None),
    })),
    3: PaperTable(3, "Classification scores, photo→labels: baselines", "photo2labels", _baselines({
        "cogan": ((0.45, 0.11, 0.08), "1 source"),
        "bigan": ((0.41, 0.13, 0.07), "1 source"),
        "simgan": ((0.47, 0.11, 0.07), "1 source"),
        "feature-gan": ((0.50, 0.10, 0.06), "1 source"),
        "cyclegan": ((0.58, 0.22, 0.16), None),
        "pix2pix": ((0.85, 0.40, 0.32), None),
    })),
    4: PaperTable(4, "Ablation: FCN scores, labels→photo", "labels2photo", _ablations({
        "cycle-only": ((0.22, 0.07, 0.02), None),
        "no-cycle": ((0.51, 0.11, 0.08), None),
        "forward-cycle": ((0.55, 0.18, 0.12), None),
        "backward-cycle": ((0.39, 0.14, 0.06), "unverified"),
        "cyclegan": ((0.52, 0.17, 0.11), None),
    }), extra_rows=_IDENTITY),
    5: PaperTable(5, "Ablation: classification scores, photo→labels", "photo2labels", _ablations({
        "cycle-only": ((0.10, 0.05, 0.02), "unverified"),
        "no-cycle": ((0.53, 0.11, 0.07), None),
        "forward-cycle": ((0.49, 0.11, 0.07), "unverified"),
        "backward-cycle": ((0.01, 0.06, 0.01), None),
        "cyclegan": ((0.58, 0.22, 0.16), None),
    }), extra_rows=_IDENTITY),
}

#: Every row key the tables know (extra rows included).
KNOWN_ROWS: frozenset[str] = frozenset(
    r.key for t in TABLES.values() for r in (*t.rows, *t.extra_rows)
)


#: The training settings a caption compares with the paper's, and how each is written (with the
#: run's length: its iterations, or its epochs where iterations are 0).
SETTING_WORDS: dict[str, str] = {
    "image_size": "{} px", "ngf": "ngf {}", "ndf": "ndf {}", "n_blocks": "{} residual blocks",
    "upsample": "{} upsampling", "batch_size": "batch {}", "lr": "lr {}",
}
#: The generator's upsampling in words.
UPSAMPLING_WORDS: dict[str, str] = {"deconv": "transposed-convolution", "resize": "resize-convolution"}


def _word(key: str, value: object) -> str:
    if key == "upsample":
        return SETTING_WORDS[key].format(UPSAMPLING_WORDS.get(str(value), str(value)))
    return SETTING_WORDS[key].format(f"{float(value):g}")


def setting_words(params: Mapping[str, object]) -> dict[str, str] | None:
    """The settings of one run's config (its MLflow params, or a config dict) as words; None for a
    run without them (rows scored from images made elsewhere)."""
    params = {"upsample": Config.upsample, **params}  # recorded before the key existed: the default generator
    if not all(k in params for k in (*SETTING_WORDS, "iters", "epochs")):
        return None
    words = {k: _word(k, params[k]) for k in SETTING_WORDS}
    iters = int(float(params["iters"]))
    words["length"] = f"{iters} iterations" if iters > 0 else f"{float(params['epochs']):g} epochs"
    return words


#: The paper's Cityscapes setting, as the ``paper`` preset writes it.
PAPER_SETTING: dict[str, str] = setting_words(Config().replace(**PRESETS["paper"]).to_dict()) or {}


def setting_departures(runs_params: Iterable[Mapping[str, object]]) -> str:
    """One sentence: where the runs' training setting departs from the paper's ("" where it does
    not, or no run says); a setting that differs between runs is given with each of its values."""
    settings = [s for s in map(setting_words, runs_params) if s is not None]
    if not settings:
        return ""
    parts = []
    for key, paper in PAPER_SETTING.items():
        ours = sorted({s[key] for s in settings})
        if ours != [paper]:
            parts.append(f"{' or '.join(ours)} (paper: {paper})")
    return "Our setting departs from the paper's: " + ", ".join(parts) + "." if parts else ""


#: Settings of a row that are cgbench's choices, not the paper's (the report footnotes them).
OUR_SETTINGS: dict[str, str] = {
    "simgan": "self-regularisation weight λ_self (lambda_self, 10) is cgbench's choice; neither paper gives it",
    "feature-gan": "self-regularisation weight λ_self (lambda_self, 10) is cgbench's choice; neither paper gives it",
    "cogan": "latent search (Adam, cogan_search_steps steps at cogan_search_lr, on the mean squared pixel error) "
             "is cgbench's choice; the paper says only that the code reproducing the input is found",
}
