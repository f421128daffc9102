"""The one typed run configuration, its presets, and strict overrides.

A run is described by a single flat :class:`Config`. A preset (``tiny``, ``cpu``, ``paper``)
changes only the keys it names; a YAML file and ``--set key=value`` do the same on top of it.
Any key that is not a field of :class:`Config` is an error that lists the valid keys, and
every value is converted to the field's type (so ``--set lr=1e-4`` is a float, not a string).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cgbench.errors import ConfigError
from cgbench.inputs import read_yaml, shown


@dataclass(frozen=True)
class Config:
    # --- what is trained -------------------------------------------------------------
    method: str = "cyclegan"
    ablation: str = "cyclegan"
    seed: int = 0
    # --- data: X = colour label maps, Y = photos (the paper's notation) ----------------
    data: str = "synthcity"  # "synthcity" (the embedded dataset) or a dataset folder
    image_size: int = 128  # crop size seen by the networks
    load_size: int = 143  # images are resized to this square, then randomly cropped
    flip: bool = True
    disjoint: bool = False  # draw X and Y from disjoint halves of the training scenes
    # how files become images (cgbench.data.layouts): "authors" = the paper's data, their 256 px
    # JPEG q100 layouts and bicubic resizes; "clean" = the files resized once (bilinear / nearest)
    prep: str = "authors"
    # --- networks --------------------------------------------------------------------
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 6  # residual blocks of the ResNet generator (6 at 128 px, 9 at 256 px)
    upsample: str = "deconv"  # deconv|resize: the generator's x2 upsampling (paper: deconv, a transposed conv)
    n_layers_d: int = 3  # PatchGAN depth; 3 gives the 70x70 receptive field
    norm: str = "auto"  # auto|instance|batch; auto: the method's own (pix2pix: batch; the others: instance)
    init_gain: float = 0.02
    # --- objective -------------------------------------------------------------------
    gan_mode: str = "lsgan"  # "lsgan" (the paper's) or "vanilla" (BCE)
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # times lambda_cycle; used only by ablations that enable identity
    pool_size: int = 50
    # --- baselines (Tables 2 and 3; see cgbench.methods) -------------------------------
    lambda_l1: float = 100.0  # pix2pix: weight of the L1 to the paired target
    lambda_self: float = 10.0  # simgan / feature-gan: weight of the self-regularisation term
    feature_weights: str = ""  # feature-gan: torchvision VGG-16 state dict file ("" = fixed seeded random VGG-16)
    latent_dim: int = 100  # cogan: size of the shared latent code z
    cogan_search_steps: int = 200  # cogan: Adam steps of the latent search that translates an image
    cogan_search_lr: float = 0.05  # cogan: Adam learning rate of that search
    # --- optimisation ----------------------------------------------------------------
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    epochs: float = 200.0  # total epochs; exactly one of epochs / iters is > 0 (setting one zeroes the other)
    iters: int = 0  # total iterations
    decay_fraction: float = 0.5  # lr constant, then linear decay to 0 over this last fraction
    # --- bookkeeping -----------------------------------------------------------------
    log_every: int = 1  # record the loss terms every k iterations
    sample_every: int = 5000  # image grids every k iterations (0: only at the end)
    checkpoint_every: int = 500  # iterations between checkpoints (and the final one)
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...
    threads: int = 0  # torch CPU threads (0: torch's default)
    # --- speed: how a step is computed, never what (see cgbench.speed) -----------------
    parallel_halves: str = "auto"  # auto|on|off: the x- and y-halves of CycleGAN's step concurrently (CPU)
    group_norm_kernel: str = "auto"  # auto|on|off: instance norm computed by torch's group-norm kernel
    batched_discriminator: str = "auto"  # auto|on|off: D judges real and fake in one batch
    tap_decomposition: str = "auto"  # auto|on|off: last layers (3 or 1 outputs) as 1x1 conv per tap + fold
    channels_last: str = "auto"  # auto|on|off: NHWC networks
    amp: str = "off"  # off|bf16 (auto: off): bf16 autocast of every method's forward passes; fp32 is the paper's
    fused_adam: str = "auto"  # auto|on|off: torch's fused Adam
    compile_mode: str = "off"  # off|default|reduce-overhead|max-autotune[-no-cudagraphs]: torch.compile
    cudnn_benchmark: bool = True  # cudnn autotuning (CUDA only)
    cuda_graphs: str = "auto"  # auto|on|off: the G and D steps captured as CUDA graphs (CUDA, graph-safe methods)
    # --- the evaluator network behind the FCN score (``cgbench fcn train``) -------------
    fcn_arch: str = "fcn8s"  # "fcn8s" (FCN-8s sized for the data) or "fcn_resnet50" (torchvision)
    fcn_width: int = 64  # base channel width of fcn8s (unused by fcn_resnet50)
    fcn_epochs: float = 60.0  # passes over the training photos
    fcn_batch_size: int = 8
    fcn_lr: float = 1e-3  # Adam; cosine-decayed to 0 over training
    fcn_weight_decay: float = 1e-4
    fcn_crop: int = 512  # train on random crops of this size at label resolution (0: whole images)

    def replace(self, **changes: Any) -> Config:
        return apply_overrides(self, changes, source="overrides")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # The paper's Cityscapes setting: 128x128 crops of 143x143 images, 6 blocks, batch 1,
    # 100 epochs at 2e-4 then 100 epochs of linear decay.
    "paper": dict(image_size=128, load_size=143, prep="authors", ngf=64, ndf=64, n_blocks=6, batch_size=1, epochs=200.0, iters=0,
                  fcn_arch="fcn8s", fcn_width=64, fcn_epochs=60.0, fcn_batch_size=8, fcn_lr=1e-3, fcn_crop=512),
    # Trains to a meaningful result on 2 CPU cores in minutes: quarter-width networks at 64 px, and
    # 1000 iterations at lr 5e-4 (measured: as good as 2000 at 4e-4 and better than 2000 at the
    # paper's 2e-4, at half the time; see docs/protocol.md#presets). The generator upsamples by
    # resize-convolution: at this budget a transposed convolution's checkerboard still covers its
    # photos (the authors see it fade only with long training), and labels->photo scored lower.
    "cpu": dict(
        image_size=64, load_size=72, prep="clean", ngf=16, ndf=16, n_blocks=4, upsample="resize", batch_size=1,
        lr=5e-4, iters=1000, checkpoint_every=500, log_every=5, sample_every=500, cogan_search_steps=100,
        fcn_arch="fcn8s", fcn_width=16, fcn_epochs=8.0, fcn_batch_size=8, fcn_lr=2e-3,
    ),
    # Seconds: for tests and smoke checks only.
    "tiny": dict(
        image_size=32, load_size=36, prep="clean", ngf=4, ndf=4, n_blocks=1, batch_size=1,
        iters=4, checkpoint_every=2, sample_every=0, pool_size=4, latent_dim=16, cogan_search_steps=3,
        fcn_width=4, fcn_epochs=1.0, fcn_batch_size=4,
        threads=1,  # tensors this small run fastest, and steadiest under load, on one thread
    ),
}


def valid_keys() -> list[str]:
    return [f.name for f in fields(Config)]


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in valid_keys()}


#: The longest text a config key takes (a path, a name): PATH_MAX, far above any real value.
MAX_TEXT = 4096
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "text"}


def _scalar(name: str, value: Any, typ: type) -> Any:
    """``value`` when it is one scalar (text, number or boolean) of bounded length; else a one-line
    error that names the key (``name``) and what the value is, never the whole value."""
    if not isinstance(value, (str, int, float, bool)):
        raise ConfigError(f"config key {name} takes {_KINDS[typ]}, not {shown(value)}; give one value")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise ConfigError(f"config key {name} is {len(value)} characters long; the limit is {MAX_TEXT}")
    return value


def _convert(key: str, value: Any, typ: type, source: str) -> Any:
    name = f"{key!r} in {source}"
    value = _scalar(name, value, typ)
    if typ is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"true", "1", "yes", "on"}:
            return True
        if text in {"false", "0", "no", "off"}:
            return False
        raise ConfigError(f"config key {name} takes true or false, not {shown(value)}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key {name} takes an integer, not {shown(value)}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"config key {name} takes an integer, not {shown(value)}") from None
        if not number.is_integer():
            raise ConfigError(f"config key {name} takes an integer, not {shown(value)}")
        return int(number)
    if typ is float:
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"config key {name} takes a number, not {shown(value)}") from None
    if isinstance(value, bool):  # YAML reads on/off (the speed switches' values) as booleans
        return "on" if value else "off"
    return str(value)


def _unknown_key_error(key: Any, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid_keys(), n=1) if isinstance(key, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(
        f"unknown config key {shown(key)} in {source}{hint}; valid keys: {', '.join(valid_keys())}"
    )


def apply_overrides(config: Config, overrides: dict[str, Any], source: str) -> Config:
    """Return ``config`` with ``overrides`` applied; only existing keys, values typed."""
    types_by_key = _field_types()
    changes = {}
    for key, value in overrides.items():
        if key not in types_by_key:
            raise _unknown_key_error(key, source)
        changes[key] = _convert(key, value, types_by_key[key], source)
    if changes.get("iters", 0) > 0 and "epochs" not in changes:  # the length is given one way only
        changes["epochs"] = 0.0
    elif changes.get("epochs", 0) > 0 and "iters" not in changes:
        changes["iters"] = 0
    return dataclasses.replace(config, **changes)


def parse_set(items: typing.Iterable[str], example: str = "lr=1e-4") -> dict[str, str]:
    """Parse ``--set key=value`` items."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes key=value, got {item!r}; e.g. --set {example}")
        out[key.strip()] = value.strip()
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; give the path of a YAML file")
    data = read_yaml(path, "config file") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must be a mapping of key: value")
    return data


def resolve(
    preset: str | None = None,
    config_file: str | Path | None = None,
    sets: dict[str, Any] | None = None,
    **explicit: Any,
) -> Config:
    """Defaults, then the preset, then the YAML file, then ``--set``, then explicit CLI options."""
    config = Config()
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
        config = apply_overrides(config, PRESETS[preset], source=f"preset {preset!r}")
    if config_file is not None:
        config = apply_overrides(config, load_yaml(config_file), source=str(config_file))
    if sets:
        config = apply_overrides(config, sets, source="--set")
    given = {k: v for k, v in explicit.items() if v is not None}
    for key in ("iters", "epochs"):  # --iters / --epochs give the run's length: 0 or less gives none
        if key in given and not given[key] > 0:
            raise ConfigError(f"--{key} must be > 0, got {given[key]}")
    config = apply_overrides(config, given, source="the command line")
    validate(config)
    return config


#: The range of every numeric key (floats must also be finite): the lowest value, whether it is
#: allowed, and the highest allowed (None: no upper bound).
RANGES: dict[str, tuple[float, bool, float | None]] = {
    **{k: (1, True, None) for k in ("batch_size", "ngf", "ndf", "log_every", "checkpoint_every", "n_layers_d",
                                     "latent_dim", "fcn_width", "fcn_batch_size")},
    **{k: (0, True, None) for k in ("n_blocks", "pool_size", "sample_every", "threads", "cogan_search_steps", "iters",
                                     "fcn_crop", "epochs", "lambda_cycle", "lambda_identity", "lambda_l1",
                                     "lambda_self", "cogan_search_lr", "fcn_weight_decay", "init_gain")},
    **{k: (0, False, None) for k in ("lr", "fcn_lr", "fcn_epochs")},
    "seed": (0, True, 2**32 - 1),  # NumPy's seeds end there
    "beta1": (0, True, 1), "beta2": (0, True, 1),  # Adam's betas lie in [0, 1)
    "decay_fraction": (0, True, 1),
}
_HALF_OPEN = ("beta1", "beta2")  # 1 itself is not allowed


def _check_range(key: str, value: float) -> None:
    low, low_allowed, high = RANGES[key]
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    too_low = value < low or (value == low and not low_allowed)
    too_high = high is not None and (value > high or (value == high and key in _HALF_OPEN))
    if too_low or too_high:
        bound = f"{'>=' if low_allowed else '>'} {low}"
        if high is not None:
            bound = f"in [{low}, {high}{')' if key in _HALF_OPEN else ']'}"
        raise ConfigError(f"{key} must be {bound}, got {value}")


def _check_length(config: Config) -> None:
    """A run's length is given one way: iters or epochs."""
    if config.epochs > 0 and config.iters > 0:
        raise ConfigError("give exactly one of iters or epochs (e.g. --iters 1000 or --epochs 200)")
    if config.epochs == 0 and config.iters == 0:
        raise ConfigError("iters and epochs are both 0, so the run has no length; give --iters N or --epochs E")


def max_discriminator_layers(image_size: int) -> int:
    """The deepest PatchGAN an image of ``image_size`` allows: its n_layers_d stride-2 convolutions
    and two 4x4 ones after them must leave at least one patch (and instance norm two pixels), so
    ``image_size // 2**n_layers_d >= 3``."""
    n = 0
    while image_size // 2 ** (n + 1) >= 3:
        n += 1
    return n


def validate(config: Config) -> None:
    """Every key's range, and the checks that need more than one key; each error names the fix."""
    for key in RANGES:
        _check_range(key, getattr(config, key))
    _check_length(config)
    if config.image_size < 32 or config.image_size % 4:
        raise ConfigError(
            f"image_size {config.image_size} is too small or not a multiple of 4; the generator "
            "downsamples twice and the PatchGAN needs >= 32 px: use e.g. 32, 64 or 128"
        )
    if config.load_size < config.image_size:
        raise ConfigError(
            f"load_size {config.load_size} is smaller than image_size {config.image_size}; "
            "images are resized to load_size and then cropped, so set load_size >= image_size"
        )
    from cgbench.data.layouts import PREPS

    if config.prep not in PREPS:
        raise ConfigError(f"prep {shown(config.prep)} is not one of: {', '.join(PREPS)}")
    deepest = max_discriminator_layers(config.image_size)
    if config.n_layers_d > deepest:
        raise ConfigError(f"n_layers_d {config.n_layers_d} downsamples {config.image_size} px images more than they "
                          f"allow (the PatchGAN needs image_size >= 3 x 2^n_layers_d); use n_layers_d <= {deepest} "
                          "or a larger image_size")
    if config.gan_mode not in {"lsgan", "vanilla"}:
        raise ConfigError(f"gan_mode {shown(config.gan_mode)} is not one of: lsgan, vanilla")
    from cgbench.models.networks import UPSAMPLING

    if config.upsample not in UPSAMPLING:
        raise ConfigError(f"upsample {shown(config.upsample)} is not one of: {', '.join(UPSAMPLING)}")
    if config.norm not in {"auto", "instance", "batch"}:
        raise ConfigError(f"norm {shown(config.norm)} is not one of: auto, instance, batch")
    from cgbench.speed import validate_speed

    validate_speed(config)
