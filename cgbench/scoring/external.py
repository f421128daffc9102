"""Sources made outside cgbench: a folder of generated images, or a generator checkpoint saved by
the authors' public code (junyanz/pytorch-CycleGAN-and-pix2pix).

**Folders.** Files are found recursively (PNG or JPEG) and matched to validation frames by name:

* the Cityscapes names ``<frame>_leftImg8bit.png`` (labels→photo, as the public ``evaluate.py``
  expects) and ``<frame>_gtFine_color.png`` (photo→labels) — also what ``cgbench eval
  --save-images`` writes;
* the names the authors' ``test.py`` writes, ``<stem>_fake_A.png`` / ``<stem>_fake_B.png``
  (``<stem>_real_*`` beside them are ignored). Their Cityscapes folders hold photos in A and label
  maps in B, so a generated photo is ``fake_A`` (from their ``G_B``) and a generated label map
  ``fake_B`` (from ``G_A``); when a folder holds only one kind of fake, that kind is used;
* a stem that is a bare index ``i`` (the authors' prepared Cityscapes names frames ``<i>.jpg``)
  is the ``i``-th validation frame in the sorted order of the frames' paths, from 0;
* any other stem must equal a frame's file name without ``_leftImg8bit`` and extension.

Every frame must have exactly one image and every image a frame (``allow_partial`` scores the
frames that have one and records the coverage). All images must share one size; a generated
image is resized to the label resolution by the evaluators, as a trained run's is.

**Checkpoints.** A state dict of the authors' ``ResnetGenerator`` (``resnet_6blocks``,
``resnet_9blocks``) or ``UnetGenerator`` (``unet_128``, ``unet_256``) loads into cgbench's own
networks, whose layers sit at the same indices: their residual blocks' ``conv_block`` is cgbench's
``body``, the ``running_mean``/``running_var`` of instance norms in old checkpoints are dropped
(instance norm keeps no statistics), and so are batch norm's running statistics (the pix2pix
protocol normalises with the test batch's own statistics), and a ``module.`` prefix is stripped.
Widths come from the file's shapes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cgbench.data.images import image_size, rgb_array
from cgbench.errors import CgbenchError, DataError
from cgbench.scoring.engine import Source

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARCHS = ("resnet_6blocks", "resnet_9blocks", "unet_128", "unet_256")
#: What a generated image of each direction is called: (Cityscapes suffix, the authors' fake).
NAMING = {"labels2photo": ("_leftImg8bit", "_fake_A"), "photo2labels": ("_gtFine_color", "_fake_B")}
_AUTHOR_FAKE = re.compile(r"^(?P<stem>.+)_(?P<kind>fake|real|rec|idt)_(?P<domain>[AB])$")


@dataclass
class Matched:
    """Which image file goes with which validation frame."""

    files: dict[int, Path]  # frame index -> file
    missing: list[str]  # frames without an image
    unmatched: list[Path]  # images without a frame
    duplicates: dict[str, list[Path]] = field(default_factory=dict)  # frame -> its images, when it has several

    def coverage(self, n: int) -> float:
        return len(self.files) / n if n else 0.0


def _frame_key(name: str) -> str:
    return Path(name).name.removesuffix("_leftImg8bit")


def _candidates(folder: Path, direction: str) -> list[tuple[str, Path]]:
    """(key, file) of every image in ``folder`` that may hold a ``direction`` output."""
    suffix, fake = NAMING[direction]
    other_suffix, other_fake = NAMING["photo2labels" if direction == "labels2photo" else "labels2photo"]
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    fakes = {m.group("domain") for p in files if (m := _AUTHOR_FAKE.match(p.stem)) and m.group("kind") == "fake"}
    wanted_fake = fake if len(fakes) != 1 else f"_fake_{fakes.pop()}"
    out = []
    for path in files:
        stem = path.stem
        author = _AUTHOR_FAKE.match(stem)
        if author:
            if author.group("kind") != "fake" or f"_fake_{author.group('domain')}" != wanted_fake:
                continue  # the inputs, reconstructions and targets the authors' test.py writes beside each fake
            out.append((author.group("stem"), path))
        elif stem.endswith(other_suffix):
            continue  # the other direction's outputs (cgbench --save-images keeps both)
        else:
            out.append((stem.removesuffix(suffix), path))
    return out


def candidate_images(folder: Path, direction: str) -> list[Path]:
    """The images in ``folder`` that may hold ``direction`` outputs, in path order."""
    return [path for _, path in _candidates(folder, direction)]


def match_images(folder: Path, names: list[str], direction: str) -> Matched:
    """Match the images in ``folder`` to the validation frames ``names`` (see the module doc)."""
    keys = {_frame_key(n): i for i, n in enumerate(names)}
    order = sorted(range(len(names)), key=lambda i: names[i])  # the authors' <i>: sorted order of the paths
    files: dict[int, Path] = {}
    unmatched: list[Path] = []
    duplicates: dict[str, list[Path]] = {}
    for key, path in _candidates(folder, direction):
        frame = keys.get(key)
        if frame is None and key.isdigit() and int(key) < len(names):
            frame = order[int(key)]
        if frame is None:
            unmatched.append(path)
        elif frame in files:
            duplicates.setdefault(_frame_key(names[frame]), [files[frame]]).append(path)
        else:
            files[frame] = path
    missing = [names[i] for i in range(len(names)) if i not in files]
    return Matched(files, missing, unmatched, duplicates)


def _first(items: list) -> str:
    return ", ".join(str(x) for x in items[:3]) + (", ..." if len(items) > 3 else "")


def check_matched(matched: Matched, folder: Path, n: int, allow_partial: bool) -> None:
    if matched.duplicates:
        frame, paths = next(iter(matched.duplicates.items()))
        more = f" (and {len(matched.duplicates) - 1} more frame(s) like it)" if len(matched.duplicates) > 1 else ""
        raise DataError(f"validation frame {frame} has {len(paths)} images in {folder}: "
                        f"{', '.join(str(p.relative_to(folder)) for p in paths)}{more}; keep one image per frame")
    if matched.unmatched:
        raise DataError(f"{len(matched.unmatched)} image(s) in {folder} match no validation frame "
                        f"({_first(matched.unmatched)}); name them <frame>_leftImg8bit.png, <stem>_fake_A.png or "
                        "<index>.png, or remove them")
    if not matched.files:
        raise DataError(f"no image in {folder} matches a validation frame; see cgbench eval --help for the names")
    if matched.missing and not allow_partial:
        raise DataError(f"{len(matched.missing)} of {n} validation frames have no image in {folder} "
                        f"({_first(matched.missing)}); add them, or score what is there with --allow-partial")


def folder_digest(files: list[Path], folder: Path) -> str:
    """sha256 (16 hex digits) of the files' paths relative to ``folder`` and their bytes."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def image_size_of(files: list[Path]) -> int | None:
    """S when the first image is an S×S square (the generator's resolution), else None."""
    width, height = image_size(files[0])
    return width if width == height else None


def folder_source(folder: Path, direction: str, files: dict[int, Path], image_size: int, name: str) -> Source:
    """The images of ``files`` (frame index -> path) as the ``direction`` translation of the split."""
    images = {i: torch.from_numpy(rgb_array(p)).permute(2, 0, 1) for i, p in files.items()}
    sizes = {tuple(im.shape[-2:]) for im in images.values()}
    if len(sizes) > 1:
        first = [next(p for i, p in files.items() if tuple(images[i].shape[-2:]) == s) for s in sorted(sizes)[:2]]
        raise DataError(f"the images in {folder} have different sizes ({first[0].name}: {sorted(sizes)[0]}, "
                        f"{first[1].name}: {sorted(sizes)[1]}); give images of one size")

    def translate(inputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.stack([images[int(i)] for i in index]).to(inputs.device)

    paths = list(files.values())
    details = {"folder": str(folder), "files": len(paths), "folder_digest": folder_digest(paths, folder)}
    return Source(name, "images", image_size, {direction: translate}, details)


# --- the authors' checkpoints -------------------------------------------------------------------------


def authors_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    """The authors' generator state dict in cgbench's key names."""
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CgbenchError(f"{path} is not a generator state dict (a mapping of tensors), as the authors' "
                           "*_net_G_A.pth / *_net_G_B.pth are")
    out = {}
    for key, value in obj.items():
        key = key.removeprefix("module.")
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        out[key.replace(".conv_block.", ".body.")] = value
    return out


def build_authors_generator(arch: str, norm: str, state: dict[str, torch.Tensor], image_size: int, path: Path):
    """cgbench's network for the authors' ``arch``, sized from ``state``'s shapes."""
    from cgbench.models.networks import ResnetGenerator
    from cgbench.models.unet import UnetGenerator

    first = next((v for k, v in state.items() if k.endswith("weight") and v.dim() == 4), None)
    if first is None:
        raise CgbenchError(f"{path} holds no convolution weights; it is not a generator of the authors' code")
    ngf = int(first.shape[0])
    if arch.startswith("resnet"):
        return ResnetGenerator(3, 3, ngf, int(arch.removeprefix("resnet_").removesuffix("blocks")), norm=norm)
    size = 128 if arch == "unet_128" else 256
    if image_size % size:
        raise CgbenchError(f"{arch} halves its input {size.bit_length() - 1} times; give --image-size {size} "
                           "(or a multiple of it)")
    return UnetGenerator(3, 3, size, ngf, dropout=False, norm=norm)


def load_authors_generator(path: Path, arch: str, norm: str, image_size: int, device: torch.device):
    """The authors' generator checkpoint at ``path`` as a cgbench network in evaluation mode."""
    if arch not in ARCHS:
        raise CgbenchError(f"unknown --arch {arch!r}; choose one of {', '.join(ARCHS)}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CgbenchError(f"cannot load {path} with weights_only=True ({type(exc).__name__}); give a state dict "
                           "saved by the authors' code") from None
    state = authors_state_dict(obj, path)
    net = build_authors_generator(arch, norm, state, image_size, path)
    expected = net.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise CgbenchError(f"{path} does not fit --arch {arch} --norm {norm}: it has no {key!r}")
        if tuple(state[key].shape) != tuple(value.shape):
            raise CgbenchError(f"{path} does not fit --arch {arch} --norm {norm}: {key!r} is "
                               f"{tuple(state[key].shape)}, the network needs {tuple(value.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CgbenchError(f"{path} does not fit --arch {arch} --norm {norm}: unexpected key {extra[0]!r}")
    net.load_state_dict(state)
    return net.to(device).eval()


def checkpoint_source(path: Path, arch: str, norm: str, direction: str, image_size: int, device: torch.device,
                      name: str) -> Source:
    """A generator from the authors' code translating ``direction`` at ``image_size``."""
    net = load_authors_generator(path, arch, norm, image_size, device)
    h = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    details = {"checkpoint": str(path), "arch": arch, "norm": norm, "checkpoint_digest": h}
    return Source(name, "checkpoint", image_size, {direction: lambda x, _: net(x)}, details)
