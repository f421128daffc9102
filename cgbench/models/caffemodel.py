"""Weights of a Caffe ``.caffemodel`` without Caffe: a streaming protobuf reader, and the loader of
the published ``fcn-8s-cityscapes.caffemodel`` into :class:`~cgbench.models.published_fcn.PublishedFCN8s`.

A ``.caffemodel`` is one protobuf ``NetParameter`` message. Only what carries weights is read:

* ``NetParameter``: ``layer`` = field 100 (``LayerParameter``) or the legacy ``layers`` = field 2
  (``V1LayerParameter``);
* ``LayerParameter``: name = 1, blobs = 7; ``V1LayerParameter``: name = 4, blobs = 6;
* ``BlobProto``: shape = 7 (``BlobShape``: dim = 1, int64, packed or not), or the legacy
  num/channels/height/width = 1-4; float data = 5 (packed, or one fixed32 per field in old files),
  double data = 8.

Everything else (layer types, parameters, diffs) is skipped by seeking past it. The file is read
through an ordinary buffered file object, one layer at a time, and never held whole: each blob's
payload is read once, straight into its NumPy array, and :func:`load_published_fcn` copies each
layer into the network before reading the next (the published file is about 540 MB, 411 MB of it
in ``fc6_cs``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from cgbench.errors import DataError
from cgbench.models.published_fcn import PublishedFCN8s

__all__ = ["iter_caffemodel", "load_caffe_weights", "load_published_fcn"]

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5  # the protobuf wire types a caffemodel uses
_LAYER_FIELDS = {100: (1, 7), 2: (4, 6)}  # NetParameter field -> (name field, blobs field)
_NOT_PUBLISHED = "this is not fcn-8s-cityscapes.caffemodel"
MAX_AXES = 32  # Caffe's kMaxBlobAxes


class _Corrupt(Exception):
    """The file is not a well-formed NetParameter (turned into one DataError naming the file)."""


class _Wire:
    """A cursor over a protobuf-encoded file: tags, varints, bounded sub-messages, payloads."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def pos(self) -> int:
        return self.f.tell()

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.f.read(1)
            if not byte:
                raise _Corrupt(f"it ends inside a number at byte {self.pos()}")
            value |= (byte[0] & 0x7F) << shift
            if byte[0] < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise _Corrupt(f"malformed number at byte {self.pos()}")

    def fields(self, end: int) -> Iterator[tuple[int, int]]:
        """(field number, wire type) of each field up to byte ``end``; the caller reads or skips it."""
        while self.pos() < end:
            key = self.varint()
            yield key >> 3, key & 7
        if self.pos() != end:
            raise _Corrupt(f"a field overruns its message at byte {self.pos()}")

    def length(self, end: int) -> int:
        """A length-delimited field's size, checked to fit before ``end``."""
        size = self.varint()
        if self.pos() + size > end:
            raise _Corrupt(f"a {size}-byte field at byte {self.pos()} runs past byte {end}")
        return size

    def message_end(self, end: int) -> int:
        """Where the length-delimited field that starts here ends."""
        size = self.length(end)
        return self.pos() + size

    def skip(self, wire: int, end: int) -> None:
        """Step over a field of this wire type without reading its payload."""
        if wire == VARINT:
            self.varint()
            return
        if wire == LENGTH:
            size = self.length(end)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if self.pos() + size > end:
                raise _Corrupt(f"a field at byte {self.pos()} runs past byte {end}")
        else:
            raise _Corrupt(f"unknown wire type {wire} at byte {self.pos()}")
        self.f.seek(size, os.SEEK_CUR)

    def array(self, size: int, dtype: str, end: int) -> np.ndarray:
        """The next ``size`` bytes (within byte ``end``) as a little-endian array, read straight into
        its memory."""
        if self.pos() + size > end:
            raise _Corrupt(f"a {size}-byte array at byte {self.pos()} runs past byte {end}")
        out = np.empty(size // np.dtype(dtype).itemsize, dtype=dtype)
        if size % out.itemsize or self.f.readinto(memoryview(out).cast("B")) != size:
            raise _Corrupt(f"a {size}-byte array at byte {self.pos()} is cut short")
        return out

    def text(self, end: int) -> str:
        return self.f.read(self.length(end)).decode("utf-8", errors="replace")


def _shape(wire: _Wire, end: int) -> tuple[int, ...]:
    """A ``BlobShape``: its dims (field 1), packed or one varint per field."""
    dims: list[int] = []
    for field, wire_type in wire.fields(end):
        if field == 1 and wire_type == LENGTH:
            stop = wire.message_end(end)
            while wire.pos() < stop:
                _add_dim(dims, wire.varint())
        elif field == 1 and wire_type == VARINT:
            _add_dim(dims, wire.varint())
        else:
            wire.skip(wire_type, end)
    return tuple(dims)


def _add_dim(dims: list[int], dim: int) -> None:
    """One more axis of a shape being read: never more than Caffe's :data:`MAX_AXES`, however many
    the file lists."""
    if len(dims) == MAX_AXES:
        raise _Corrupt(f"a blob shape has more than Caffe's {MAX_AXES} axes")
    dims.append(dim)


def _blob(wire: _Wire, end: int) -> np.ndarray:
    """A ``BlobProto`` as a float32 array of its stored shape."""
    shape, legacy, chunks, doubles = None, {}, [], []
    for field, wire_type in wire.fields(end):
        if field == 7 and wire_type == LENGTH:
            shape = _shape(wire, wire.message_end(end))
        elif field in (1, 2, 3, 4) and wire_type == VARINT:
            legacy[field] = wire.varint()
        elif field == 5 and wire_type in (LENGTH, FIXED32):
            chunks.append(wire.array(wire.length(end) if wire_type == LENGTH else 4, "<f4", end))
        elif field == 8 and wire_type in (LENGTH, FIXED64):
            doubles.append(wire.array(wire.length(end) if wire_type == LENGTH else 8, "<f8", end))
        else:
            wire.skip(wire_type, end)
    if legacy:  # as in Caffe, the legacy 4-D dims win: num, channels, height, width (0 where unset)
        shape = tuple(legacy.get(f, 0) for f in (1, 2, 3, 4))
    shape = shape or ()
    parts = doubles or chunks  # as in Caffe, double_data wins where a blob has it
    if len(parts) == 1:
        data = parts[0]  # the usual case: one packed payload, not copied
    else:
        data = np.concatenate(parts) if parts else np.empty(0, np.float32)
    _check_shape(shape, data.size)
    return data.astype(np.float32, copy=False).reshape(shape)


def _check_shape(shape: tuple[int, ...], values: int) -> None:
    """A blob's shape fits the values the file holds for it: at most Caffe's 32 axes, each no
    longer than the values there are, and their product (exact: Python integers, which do not
    overflow) equal to the count."""
    if len(shape) > MAX_AXES or any(d > max(values, 1) for d in shape) or math.prod(shape) != values:
        dims = shape if len(shape) <= 8 else (*shape[:8], "...")
        raise _Corrupt(f"a blob of shape {dims} ({len(shape)} axes) holds {values} values")


def _layer(wire: _Wire, end: int, name_field: int, blobs_field: int) -> tuple[str, list[np.ndarray]]:
    name, blobs = "", []
    for field, wire_type in wire.fields(end):
        if field == name_field and wire_type == LENGTH:
            name = wire.text(end)
        elif field == blobs_field and wire_type == LENGTH:
            try:
                blobs.append(_blob(wire, wire.message_end(end)))
            except _Corrupt as e:
                raise _Corrupt(f"layer {name or '(unnamed)'} blob {len(blobs)}: {e}") from None
        else:
            wire.skip(wire_type, end)
    return name, blobs


def iter_caffemodel(path: str | Path) -> Iterator[tuple[str, list[np.ndarray]]]:
    """``(name, blobs)`` of each layer of a ``.caffemodel``, in file order, read one layer at a time:
    the blobs are float32 arrays of their stored shapes (weights, then bias; none for layers such
    as ReLU or Pooling).

    Raises:
        DataError: one line naming the file, when it cannot be opened, is truncated or is not a
            Caffe ``NetParameter``.
    """
    try:
        with open(path, "rb") as f:
            wire, end = _Wire(f), os.fstat(f.fileno()).st_size
            for field, wire_type in wire.fields(end):
                if field in _LAYER_FIELDS and wire_type == LENGTH:
                    yield _layer(wire, wire.message_end(end), *_LAYER_FIELDS[field])
                else:
                    wire.skip(wire_type, end)
    except OSError as e:
        raise DataError(f"cannot read the caffemodel {path}: {e.strerror or e}") from None
    except _Corrupt as e:
        raise DataError(f"{path} is truncated or not a Caffe .caffemodel ({e}); "
                           f"download fcn-8s-cityscapes.caffemodel again") from None


def _caffe_layers(model: nn.Module) -> dict[str, list[torch.Tensor]]:
    """The model's convolution layers by (Caffe) name, with their tensors in Caffe's blob order."""
    return {
        name: [p for p in (module.weight, module.bias) if p is not None]
        for name, module in model.named_children()
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))
    }


def _same_shape(expected: tuple[int, ...], found: tuple[int, ...]) -> bool:
    """Equal, or equal once padded with leading 1s to Caffe's legacy 4-D shape (as Caffe compares)."""
    return found == expected or (len(found) == 4 and found == (1,) * (4 - len(expected)) + expected)


def _copy_layer(name: str, tensors: list[torch.Tensor], blobs: list[np.ndarray], source: str) -> None:
    if len(blobs) != len(tensors):
        raise DataError(f"{source}: layer {name} has {len(blobs)} blobs, expected {len(tensors)} "
                           f"(weight{' and bias' if len(tensors) == 2 else ''}); {_NOT_PUBLISHED}")
    for role, tensor, blob in zip(("weight", "bias"), tensors, blobs):
        if not _same_shape(tuple(tensor.shape), blob.shape):
            raise DataError(f"{source}: layer {name} {role} has shape {blob.shape}, expected "
                               f"{tuple(tensor.shape)}; {_NOT_PUBLISHED}")
        with torch.no_grad():
            tensor.copy_(torch.from_numpy(blob.reshape(tensor.shape)))


def load_caffe_weights(model: nn.Module, layers: Iterable[tuple[str, list[np.ndarray]]], source: str) -> None:
    """Copy ``(name, blobs)`` pairs (as :func:`iter_caffemodel` yields them) into ``model``'s
    convolutions of those names, layer by layer.

    Every convolution of ``model`` must get its layer, with one blob per tensor (weight, then bias
    where the layer has one) of exactly its shape; a layer with blobs that ``model`` lacks, or a
    second layer of one name, is refused. Any mismatch raises a one-line :class:`~cgbench.errors.DataError`
    naming ``source``, the layer, the expected shape and the one found.
    """
    expected, loaded = _caffe_layers(model), set()
    for name, blobs in layers:
        if not blobs:
            continue
        if name not in expected or name in loaded:
            problem = "appears twice" if name in loaded else "holds weights the published FCN-8s has no place for"
            raise DataError(f"{source}: layer {name} {problem}; {_NOT_PUBLISHED}")
        _copy_layer(name, expected[name], blobs, source)
        loaded.add(name)
    missing = [name for name in expected if name not in loaded]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"{source}: layer {missing[0]}{more} missing: a truncated download, or {_NOT_PUBLISHED}")


def load_published_fcn(path: str | Path, device: torch.device | str = "cpu") -> PublishedFCN8s:
    """``fcn-8s-cityscapes.caffemodel`` as a :class:`PublishedFCN8s` on ``device``, in eval mode.

    The model is built on the meta device and its memory allocated on ``device`` unfilled: every
    tensor is then written from the file (:func:`load_caffe_weights` refuses a file that leaves one
    out), so no random initialisation is computed and no CPU copy is kept for a GPU model.
    """
    with torch.device("meta"):
        model = PublishedFCN8s()
    model.to_empty(device=device)
    load_caffe_weights(model, iter_caffemodel(path), str(path))
    return model.eval()
