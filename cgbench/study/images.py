"""The images of a study: a run's translations of the validation inputs, and the real images of the
target domain shown beside them.

For direction ``labels2photo`` the generated images are G(label map) and the real ones are
validation photos; for ``photo2labels`` they are F(photo) and real colour label maps. Both are
S×S at the run's resolution S: the real images are exactly what the opposite generator is fed
(:func:`cgbench.scoring.engine.translator_inputs`: photos resized bilinearly with antialiasing, colour
label maps by nearest neighbour), so real and generated images went through the
same resizing as in training. Every image is an 8-bit RGB PNG written with compression level 0
(stored deflate blocks, no metadata), so every image of a run has the same byte length whatever
it shows: the browser sees the same size, format and encoding for real and generated images.

Images are made once per (run, direction) and cached under
``<study dir>/images/<run id>/<direction>/`` (``fake/NNNNNN.png``, ``real/NNNNNN.png``,
``manifest.json``); delete that folder to make them again (e.g. after training the run further).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from cgbench.errors import CgbenchError

if TYPE_CHECKING:  # torch is imported only to make images: a server with cached images starts without it
    import numpy as np
    import torch

MANIFEST = "manifest.json"
Translator = Callable[["torch.Tensor"], "torch.Tensor"]  # inputs in [-1, 1] (B, 3, S, S) -> [-1, 1] or uint8


@dataclass(frozen=True)
class ImageSet:
    """One run's study images for one direction, as PNG bytes."""

    run_id: str
    direction: str
    step: int  # the training iteration of the checkpoint that made the generated images
    image_size: int
    dataset: str  # the run's dataset name
    digest: str  # the validation split's digest
    paired: bool  # real[i] is the target of fake[i]: never shown together
    fakes: tuple[bytes, ...]
    reals: tuple[bytes, ...]

    def manifest(self) -> dict:
        return {"run_id": self.run_id, "direction": self.direction, "step": self.step,
                "image_size": self.image_size, "dataset": self.dataset, "digest": self.digest,
                "paired": self.paired, "n_fake": len(self.fakes), "n_real": len(self.reals)}


@dataclass(frozen=True)
class RunSource:
    """What the study needs of a trained run: its translator for one direction and its facts."""

    translate: Translator
    device: torch.device  # where the translator's inputs go
    step: int
    image_size: int
    data_root: Path
    dataset: str
    prep: str = "clean"  # how the run's data was prepared; its validation images are prepared alike


def run_source(client, run_id: str, direction: str, device: str = "auto") -> RunSource:
    """``run_id``'s translator of ``direction``, from its newest checkpoint (as ``cgbench eval``
    opens a run: :func:`cgbench.evaluate.open_trained_run`)."""
    from cgbench.devices import resolve_device
    from cgbench.evaluate import open_trained_run, run_data_root
    from cgbench.protocol import Tags

    dev = resolve_device(device)
    trained = open_trained_run(client, run_id, dev, "shown in a study")
    config, translate = trained.config, trained.source.translators[direction]
    root = run_data_root(trained.run, config.data, None, config.image_size)
    return RunSource(lambda inputs: translate(inputs, None), dev, trained.step, config.image_size, root,
                     trained.run.data.tags.get(Tags.DATASET, root.name), config.prep)


def encode_png(image: np.ndarray) -> bytes:
    """(S, S, 3) uint8 → PNG bytes, uncompressed: the byte length depends only on S."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def _encode_batches(images_of: Callable[[slice], torch.Tensor], count: int, batch_size: int) -> tuple[bytes, ...]:
    """PNGs of ``images_of(batch)`` → uint8 (B, 3, S, S), batch by batch (a split at full label
    resolution does not fit in memory at once)."""
    import numpy as np

    out: list[bytes] = []
    for start in range(0, count, batch_size):
        images = images_of(slice(start, min(count, start + batch_size))).permute(0, 2, 3, 1).cpu().numpy()
        out += [encode_png(np.ascontiguousarray(img)) for img in images]
    return tuple(out)


def make_image_set(client, run_id: str, direction: str, device: str = "auto", batch_size: int = 8) -> ImageSet:
    """Translate the run's validation inputs of ``direction`` and pair them with the real images."""
    import torch

    from cgbench.data.sampler import to_uint8
    from cgbench.scoring.engine import domain_images, load_val_split, translator_inputs

    source = run_source(client, run_id, direction, device)
    size = source.image_size
    split = load_val_split(source.data_root, size, source.prep)
    opposite = "photo2labels" if direction == "labels2photo" else "labels2photo"
    counts = {way: len(domain_images(split, way)) for way in (direction, opposite)}  # inputs of each direction

    def inputs(way: str, index: slice) -> torch.Tensor:
        return translator_inputs(way, domain_images(split, way)[index], size)

    def fake(index: slice) -> torch.Tensor:
        out = source.translate(inputs(direction, index).to(source.device))
        return out if out.dtype == torch.uint8 else to_uint8(out)

    with torch.inference_mode():
        fakes = _encode_batches(fake, counts[direction], batch_size)
        reals = _encode_batches(lambda index: to_uint8(inputs(opposite, index)), counts[opposite], batch_size)
    return ImageSet(run_id, direction, source.step, size, source.dataset, split.digest, split.paired, fakes, reals)


def _write(image_set: ImageSet, folder: Path) -> None:
    """Write the set into ``folder`` all at once: into a temporary sibling, then renamed."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        for kind, images in (("fake", image_set.fakes), ("real", image_set.reals)):
            (tmp / kind).mkdir()
            for i, data in enumerate(images):
                (tmp / kind / f"{i:06d}.png").write_bytes(data)
        (tmp / MANIFEST).write_text(json.dumps(image_set.manifest(), indent=1))
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read(folder: Path) -> ImageSet | None:
    try:
        m = json.loads((folder / MANIFEST).read_text())
        fakes = tuple((folder / "fake" / f"{i:06d}.png").read_bytes() for i in range(m["n_fake"]))
        reals = tuple((folder / "real" / f"{i:06d}.png").read_bytes() for i in range(m["n_real"]))
    except (OSError, ValueError, KeyError):
        return None
    return ImageSet(m["run_id"], m["direction"], m["step"], m["image_size"], m["dataset"], m["digest"],
                    m["paired"], fakes, reals)


def image_folder(study_dir: Path, run_id: str, direction: str) -> Path:
    return Path(study_dir) / "images" / run_id / direction


def prepare_images(tracking_uri: str | None, run_id: str, direction: str, study_dir: Path,
                   device: str = "auto") -> ImageSet:
    """The run's study images: read from the cache, else made (from the run in the MLflow store at
    ``tracking_uri``) and cached."""
    folder = image_folder(study_dir, run_id, direction)
    cached = _read(folder)
    if cached is not None:
        return cached
    from cgbench.tracking import client_for

    image_set = make_image_set(client_for(tracking_uri), run_id, direction, device)
    if not image_set.fakes or not image_set.reals:
        raise CgbenchError(f"run {run_id}'s validation split has no images for {direction}; a study needs some")
    if image_set.paired and len(image_set.reals) < 2:
        raise CgbenchError(f"run {run_id}'s validation split has one image; a study shows each generated image "
                           "beside a real one that is not its own target, so it needs at least 2")
    if folder.exists():
        shutil.rmtree(folder)  # an incomplete or unreadable cache
    _write(image_set, folder)
    return image_set
