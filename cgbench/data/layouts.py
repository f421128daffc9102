"""Loading a split of a labels<->photo dataset in one of three folder layouts.

- ``cityscapes``: the official layout, ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` photos
  with ``gtFine/{split}/{city}/*_gtFine_labelIds.png`` label ids (SynthCity writes this too).
- ``aligned``: the pix2pix ``cityscapes`` set, ``train/`` and ``val/`` (or ``test/``) holding one
  image per example, the photo on the left (A) and its colour label image on the right (B).
- ``unaligned``: the CycleGAN layout, photos in ``trainA/``/``testA/`` and colour label images in
  ``trainB/``/``testB/``; examples are paired by file order when the counts agree.

Files are taken in natural order of their paths (``2_A.jpg`` before ``10_A.jpg``), so frame i of
the authors' numbered layouts is the i-th frame of the official layout in sorted path order.

Whatever the layout, a split is returned as uint8 tensors held in memory: photos (N, 3, H, W),
the colour label maps X that the generator reads (N, 3, H, W; every label in its official colour,
as the ``*_gtFine_color.png`` files), and ground truth as Cityscapes *train ids* (N, H, W),
255 = ignored. Colour label files are decoded to ground truth by
:func:`cgbench.data.labels.decode_ground_truth` (nearest of all label colours). Files are decoded
by PIL in a thread pool, and a digest of every byte read identifies the data in experiment records.

Two preparations (the config key ``prep``):

- ``clean``: photos resize bilinearly (antialiased) and label maps with NEAREST, straight from
  the files. X is the label ids painted with every label's colour (official layout) or the colour
  image as stored (colour layouts).
- ``authors``: the CycleGAN authors' published preparation. From the official layout, each photo
  and each colour label map (label ids painted with every label's colour, identical to
  ``*_gtFine_color.png``) is first resized to 256x256 (PIL bicubic) and JPEG-encoded at quality
  100 with 4:4:4 chroma in memory, exactly as their ``prepare_cityscapes_dataset.py`` writes its
  files; the pix2pix aligned and CycleGAN unaligned layouts are taken as stored (they are that
  preparation). Photos and X then resize bicubically (their training's resize to ``load_size``).
  Ground truth at a given ``size`` is decoded from the prepared colour label map and resized
  NEAREST, as it must be for the colour layouts, so all three layouts give the same ground truth;
  without a size the official layout keeps its exact label ids at native resolution (the
  validation ground truth is never resized).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cgbench.data.images import label_ids, open_image, rgb_image
from cgbench.data.labels import ID_TO_TRAIN_ID, colorize_ids, decode_ground_truth
from cgbench.errors import DataError

LAYOUTS = ("cityscapes", "aligned", "unaligned")
SPLITS = ("train", "val")
PREPS = ("clean", "authors")
AUTHORS_SIZE = 256
"""Side of the square images of the authors' prepared Cityscapes layouts."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_EXPECTED = ("Cityscapes (leftImg8bit/ and gtFine/), pix2pix aligned (train/ and val/ holding "
             "photo|label images side by side) or CycleGAN unaligned (trainA/, trainB/, testA/, "
             "testB/)")


@dataclass
class Split:
    """One split of a dataset, decoded into memory.

    ``photos`` is (N, 3, H, W) uint8 RGB (domain Y). ``label_colors`` is (M, 3, H, W) uint8: the
    colour label maps the generator reads (domain X), at the photos' size. ``labels`` is
    (M, H', W') uint8 Cityscapes train ids with 255 for ignored pixels: the ground truth. When
    ``paired`` is true, M == N and ``labels[i]`` annotates ``photos[i]``; otherwise (an unaligned
    set with different photo and label counts) the two are independent samples of each domain.
    ``names[i]`` is the path of photo i relative to the split's photo folder, without extension
    (for Cityscapes ``city/city_000000_000019_leftImg8bit``), so results can be saved under the
    ground truth's names. ``digest`` is a sha256 prefix of the relative paths and bytes of every
    file read: same data, same digest, wherever it lives. ``prep`` is how it was prepared.
    """

    photos: torch.Tensor
    label_colors: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    paired: bool
    digest: str
    layout: str
    root: str
    prep: str = "clean"

    def head(self, n: int) -> Split:
        """The first ``n`` examples (photos, label maps, ground truth and names)."""
        return dataclasses.replace(self, photos=self.photos[:n], label_colors=self.label_colors[:n],
                                   labels=self.labels[:n], names=self.names[:n])


def detect_layout(root: str | os.PathLike) -> str:
    """The layout of the dataset folder ``root``: "cityscapes", "aligned" or "unaligned"."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist: check the path, or generate a "
                        "SynthCity set there")
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "cityscapes"
    if (root / "trainA").is_dir() and (root / "trainB").is_dir():
        return "unaligned"
    if (root / "train").is_dir():
        return "aligned"
    raise DataError(f"{root} matches no dataset layout: expected {_EXPECTED}")


@dataclass
class _Task:
    """One file to read. ``role``: photo, ids (label-id image), color (colour labels) or pair."""

    path: Path
    role: str


@dataclass
class _Decoded:
    file_hash: bytes
    photo: np.ndarray | None = None  # (H, W, 3) uint8
    label: np.ndarray | None = None  # (H, W) train ids
    label_color: np.ndarray | None = None  # (H, W, 3) uint8: X
    native: tuple[int, int] = (0, 0)  # (width, height) in the file, before any resize


@dataclass(frozen=True)
class _Recipe:
    """How every file of a split becomes arrays."""

    photo_hw: tuple[int, int] | None  # photos and X
    label_hw: tuple[int, int] | None  # ground truth
    prep: str
    prepare: bool  # redo the authors' 256 px JPEG preparation (official files under "authors")

    @property
    def photo_filter(self) -> Image.Resampling:
        """Photos resize bicubically as in the authors' training, else bilinearly (antialiased)."""
        return Image.BICUBIC if self.prep == "authors" else Image.BILINEAR

    @property
    def x_filter(self) -> Image.Resampling:
        """Colour label maps resize bicubically as in the authors' training, else NEAREST."""
        return Image.BICUBIC if self.prep == "authors" else Image.NEAREST


def _as_hw(size: int | tuple[int, int] | None, what: str) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise DataError(f"{what} {size!r} is not a size: give an int or an (height, width) pair "
                        "of positive ints")
    return hw


def _natural_key(path: Path) -> tuple:
    text = path.as_posix()
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)], text


def _images(folder: Path) -> list[Path]:
    found = (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return sorted(found, key=lambda p: _natural_key(p.relative_to(folder)))


def _resize(img: Image.Image, hw: tuple[int, int] | None, resample: Image.Resampling) -> Image.Image:
    if hw is None or img.size == (hw[1], hw[0]):
        return img
    return img.resize((hw[1], hw[0]), resample)


def authors_prepared(img: Image.Image) -> Image.Image:
    """One official photo or colour label map as the authors' layouts store it: 256x256 by PIL's
    bicubic filter, then JPEG quality 100 with 4:4:4 chroma (encoded and decoded in memory)."""
    buffer = BytesIO()
    img.convert("RGB").resize((AUTHORS_SIZE, AUTHORS_SIZE), Image.BICUBIC).save(
        buffer, format="JPEG", quality=100, subsampling=0)
    return Image.open(buffer).convert("RGB")


def _photo(img: Image.Image, recipe: _Recipe) -> np.ndarray:
    if recipe.prepare:
        img = authors_prepared(img)
    return np.asarray(_resize(img, recipe.photo_hw, recipe.photo_filter))


def _from_colors(colors: Image.Image, recipe: _Recipe) -> tuple[np.ndarray, np.ndarray]:
    """(ground truth at the label size, X at the photo size) of a colour label map: train ids
    decoded by the nearest of all label colours, then NEAREST; X resized as the recipe says."""
    train_ids = Image.fromarray(decode_ground_truth(np.asarray(colors)))
    return (np.asarray(_resize(train_ids, recipe.label_hw, Image.NEAREST)),
            np.asarray(_resize(colors, recipe.photo_hw, recipe.x_filter)))


def _from_ids(ids: np.ndarray, recipe: _Recipe) -> tuple[np.ndarray, np.ndarray]:
    """(ground truth at the label size, X at the photo size) of a label-id image."""
    if recipe.prepare:
        train_ids, x = _from_colors(authors_prepared(Image.fromarray(colorize_ids(ids))), recipe)
        return (ID_TO_TRAIN_ID[ids] if recipe.label_hw is None else train_ids), x
    train_ids = _resize(Image.fromarray(ID_TO_TRAIN_ID[ids]), recipe.label_hw, Image.NEAREST)
    x_ids = _resize(Image.fromarray(ids), recipe.photo_hw, Image.NEAREST)
    return np.asarray(train_ids), colorize_ids(np.asarray(x_ids))


def _decode(task: _Task, recipe: _Recipe) -> _Decoded:
    """Read, hash and decode one file into a photo, or ground truth and X, or both (a pair); every
    image mode converts exactly or is refused (:mod:`cgbench.data.images`)."""
    try:
        data = task.path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {task.path} ({err.strerror}): restore the file") from None
    img = open_image(task.path, data)
    decoded = _Decoded(hashlib.sha256(data).digest(), native=img.size)
    if task.role == "ids":
        decoded.label, decoded.label_color = _from_ids(label_ids(img, task.path), recipe)
        return decoded
    img = rgb_image(img, task.path)
    if task.role == "pair":
        width, height = img.size
        if width % 2:
            raise DataError(f"{task.path} is {width}x{height}, not a photo|label pair of two "
                            "equal halves: replace it or use another layout")
        photo, colors = img.crop((0, 0, width // 2, height)), img.crop((width // 2, 0, width, height))
    else:
        photo, colors = (img, None) if task.role == "photo" else (None, img)
    if photo is not None:
        decoded.photo = _photo(photo, recipe)
    if colors is not None:
        decoded.label, decoded.label_color = _from_colors(colors, recipe)
    return decoded


def _stack(arrays: list[np.ndarray], paths: list[Path], folder: Path, what: str) -> np.ndarray:
    """One array of ``arrays``; the file of another size than the most common one is named."""
    shapes = [a.shape for a in arrays]
    common = max(set(shapes), key=shapes.count)
    for array, path in zip(arrays, paths):
        if array.shape != common:
            h, w = array.shape[:2]
            raise DataError(f"{path} is {w}x{h} while the other {what} in {folder} are {common[1]}x{common[0]}; "
                            f"the split's {what} must share one size: resize or replace that file")
    return np.stack(arrays)


def _check_pairs(photo_tasks: list[_Task], label_tasks: list[_Task], decoded: list[_Decoded]) -> None:
    """A label map annotates its photo pixel for pixel, so both files have the same size."""
    photos, labels = decoded[: len(photo_tasks)], decoded[len(photo_tasks):]
    for photo_task, label_task, photo, label in zip(photo_tasks, label_tasks, photos, labels):
        if photo.native != label.native:
            (pw, ph), (lw, lh) = photo.native, label.native
            raise DataError(f"label {label_task.path} is {lw}x{lh} but its photo {photo_task.path} is {pw}x{ph}; a "
                            f"label map must match its photo pixel for pixel: re-export it at {pw}x{ph} or remove "
                            "the pair")


def _cityscapes_tasks(root: Path, split: str) -> tuple[list[_Task], list[_Task], Path]:
    photo_dir, label_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    if not photo_dir.is_dir():
        raise DataError(f"{photo_dir} does not exist: this Cityscapes folder has no {split} split")
    photos = [p for p in _images(photo_dir) if p.stem.endswith("_leftImg8bit")]
    labels = []
    for photo in photos:
        prefix = photo.stem.removesuffix("_leftImg8bit")
        label = label_dir / photo.parent.relative_to(photo_dir) / f"{prefix}_gtFine_labelIds.png"
        if not label.is_file():
            raise DataError(f"photo {photo} has no label file {label}: restore it or remove the "
                            "photo")
        labels.append(_Task(label, "ids"))
    return [_Task(p, "photo") for p in photos], labels, photo_dir


def _aligned_tasks(root: Path, split: str) -> tuple[list[_Task], list[_Task], Path]:
    folder = root / split
    if split == "val" and not folder.is_dir():
        folder = root / "test"
    if not folder.is_dir():
        raise DataError(f"{root / split} does not exist: this aligned (pix2pix) folder has no "
                        f"{split} split")
    return [_Task(p, "pair") for p in _images(folder)], [], folder


def _unaligned_tasks(root: Path, split: str) -> tuple[list[_Task], list[_Task], Path]:
    prefix = "train" if split == "train" else "test"
    photo_dir, label_dir = root / f"{prefix}A", root / f"{prefix}B"
    for folder in (photo_dir, label_dir):
        if not folder.is_dir():
            raise DataError(f"{folder} does not exist: an unaligned (CycleGAN) folder needs "
                            f"{prefix}A/ (photos) and {prefix}B/ (colour labels)")
    labels = _images(label_dir)
    if not labels:
        raise DataError(f"no images in {label_dir}: add the colour label images or re-create the "
                        "dataset")
    return [_Task(p, "photo") for p in _images(photo_dir)], [_Task(p, "color") for p in labels], \
        photo_dir


_TASKS = {"cityscapes": _cityscapes_tasks, "aligned": _aligned_tasks,
          "unaligned": _unaligned_tasks}


def load_split(root: str | os.PathLike, split: str, size: int | tuple[int, int] | None = None,
               photo_size: int | tuple[int, int] | None = None, prep: str = "clean") -> Split:
    """Load the "train" or "val" split of the dataset in ``root``, its layout detected.

    ``size`` (int for square, or (h, w)) resizes everything; ``photo_size`` gives the generator's
    inputs (photos and the colour label maps X) another size than the ground truth (e.g. the
    generator's resolution beside full-resolution ground truth). Ground truth always resizes with
    NEAREST; photos and X as ``prep`` says ("clean" or "authors", see the module). Without a size,
    images keep their native resolution, which must then be the same across the split. "val" is
    ``val/`` (or ``test/``) for the aligned layout and ``testA/``/``testB/`` for the unaligned one.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if prep not in PREPS:
        raise DataError(f"unknown preparation {prep!r}: use one of {', '.join(PREPS)}")
    label_hw = _as_hw(size, "size")
    photo_hw = _as_hw(photo_size, "photo_size") or label_hw
    root = Path(root)
    layout = detect_layout(root)
    recipe = _Recipe(photo_hw, label_hw, prep, prepare=prep == "authors" and layout == "cityscapes")
    photo_tasks, label_tasks, photo_dir = _TASKS[layout](root, split)
    if not photo_tasks:
        raise DataError(f"no photos found in {photo_dir}: check the dataset folder or re-create it")

    tasks = photo_tasks + label_tasks
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(lambda t: _decode(t, recipe), tasks))

    digest = hashlib.sha256()
    for task, item in zip(tasks, decoded):
        digest.update(task.path.relative_to(root).as_posix().encode() + b"\0" + item.file_hash)

    if len(photo_tasks) == len(label_tasks):  # Cityscapes, or an unaligned set paired by file order
        _check_pairs(photo_tasks, label_tasks, decoded)

    def stack(field: str, what: str) -> np.ndarray:
        found = [(getattr(d, field), t.path) for t, d in zip(tasks, decoded) if getattr(d, field) is not None]
        return _stack([array for array, _ in found], [path for _, path in found], photo_dir, what)

    photos, labels, label_colors = stack("photo", "photos"), stack("label", "labels"), \
        stack("label_color", "colour label maps")
    return Split(
        photos=torch.from_numpy(photos).permute(0, 3, 1, 2).contiguous(),
        label_colors=torch.from_numpy(label_colors).permute(0, 3, 1, 2).contiguous(),
        labels=torch.from_numpy(labels),
        names=[t.path.relative_to(photo_dir).with_suffix("").as_posix() for t in photo_tasks],
        paired=len(photos) == len(labels),
        digest=digest.hexdigest()[:16],
        layout=layout,
        root=str(root),
        prep=prep,
    )


def split_digest(root: str | os.PathLike, split: str) -> str:
    """The ``digest`` :func:`load_split` gives ``split``, from the files' bytes without decoding any."""
    root = Path(root)
    photo_tasks, label_tasks, _ = _TASKS[detect_layout(root)](root, split)
    digest = hashlib.sha256()
    for task in photo_tasks + label_tasks:
        try:
            data = task.path.read_bytes()
        except OSError as err:
            raise DataError(f"cannot read {task.path} ({err.strerror}): restore the file") from None
        digest.update(task.path.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


def photo_names(root: str | os.PathLike, split: str) -> list[str]:
    """The ``names`` :func:`load_split` gives ``split``'s photos, without decoding any."""
    photo_tasks, _, photo_dir = _TASKS[detect_layout(Path(root))](Path(root), split)
    return [t.path.relative_to(photo_dir).with_suffix("").as_posix() for t in photo_tasks]


def count_photos(root: str | os.PathLike, split: str) -> int:
    """How many photos ``split`` of the dataset in ``root`` has, without decoding any."""
    return len(photo_names(root, split))
