"""The published FCN-8s without Caffe: a .caffemodel written here from the protobuf format facts,
under the real layer names, read back into PyTorch; the network against an independent NumPy
forward; the public script's histogram arithmetic, its quirks and the strict mode.

The files use narrow channel widths (the published geometry, names, kernels, pads and crops, with
VGG-16's 64..512 and 4096 channels shrunk) so a whole file is written, read and run in a second;
one test writes a file of the real size. The Python API's FCNScore scores it as the ``fcn`` plugin does.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from tqdm import tqdm

from cgbench.errors import CgbenchError
from cgbench.metrics import FCNScore
from cgbench.models.caffemodel import iter_caffemodel, load_caffe_weights, load_published_fcn
from cgbench.models.published_fcn import PublishedFCN8s, preprocess
from cgbench.plugins import Batch, EvalContext, Segmenter, discover
from cgbench.protocol import SCORE_METRICS, fcn_predict
from evaluators.bench_published_fcn import bench_published_fcn
from evaluators.published_fcn import (
    PublicScriptConfusion,
    public_fast_hist,
    published_fcn_predict,
    resize_as_public_script,
)

TRUNK, FC = (4, 6, 8, 8, 8), 16  # narrow widths; the published ones are (64, 128, 256, 512, 512), 4096
BLOCKS = (2, 2, 3, 3, 3)  # convolutions per VGG-16 block
MEAN_BGR = np.array((72.78044, 83.21195, 73.45286), dtype=np.float32)  # the public script's mean

# --- a .caffemodel writer, from the format: NetParameter{layer=100 | layers=2 (V1)} -----------
# A message is a list of parts (bytes, or float arrays written as they lie in memory), so a
# 400 MB blob is written without being copied into one bytes object.


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def delimited(field: int, parts: list) -> list:
    size = sum(p.nbytes if isinstance(p, np.ndarray) else len(p) for p in parts)
    return [key(field, 2) + varint(size), *parts]


UNKNOWN = (key(900, 0) + varint(2**62 + 12345) + key(901, 1) + b"\0" * 8 + key(902, 5) + b"\0" * 4
           + b"".join(delimited(903, [b"".join(delimited(1, [b"nested"]))])))  # one field per wire type


def unpacked_floats(array: np.ndarray) -> bytes:
    """Field 5 repeated, not packed: a fixed32 tag (5 << 3 | 5) before every float, as old files hold."""
    records = np.empty(array.size, dtype=[("tag", "u1"), ("value", "<f4")])  # 5 bytes each, no padding
    records["tag"], records["value"] = 5 << 3 | 5, array.ravel()
    return records.tobytes()


def blob(array: np.ndarray, layout: str) -> list:
    """BlobProto: modern = shape (7) + packed floats (5); legacy = num/channels/height/width (1-4)
    + unpacked floats; double = shape + packed double_data (8) + a diff (6) to skip."""
    if layout == "legacy":
        dims = (1,) * (4 - array.ndim) + array.shape
        return [b"".join(key(f, 0) + varint(d) for f, d in zip((1, 2, 3, 4), dims)), unpacked_floats(array)]
    shape = b"".join(delimited(7, [b"".join(delimited(1, [b"".join(varint(d) for d in array.shape)]))]))
    if layout == "double":
        return [shape, *delimited(8, [array.astype("<f8")]), *delimited(6, [b"\0" * 8])]
    return [shape, *delimited(5, [np.ascontiguousarray(array, "<f4")]), UNKNOWN]


V1_TYPES = {"Convolution": 4, "Deconvolution": 39, "ReLU": 18, "Pooling": 17}


def layer(name: str, kind: str, blobs: list[np.ndarray], layout: str) -> list:
    if layout == "legacy":  # V1LayerParameter: name 4, type 5 (an enum), blobs 6
        head = b"".join(delimited(4, [name.encode()])) + key(5, 0) + varint(V1_TYPES.get(kind, 0))
        return delimited(2, [head, *(part for b in blobs for part in delimited(6, blob(b, layout)))])
    head = b"".join(delimited(1, [name.encode()]) + delimited(2, [kind.encode()])) + UNKNOWN  # LayerParameter
    return delimited(100, [head, *(part for b in blobs for part in delimited(7, blob(b, layout)))])


def write_caffemodel(path, layers: list[tuple[str, str, list[np.ndarray]]], layout: str = "modern") -> None:
    with open(path, "wb") as f:
        f.write(b"".join(delimited(1, [b"fcn-8s-cityscapes"])) + UNKNOWN)
        for name, kind, blobs in layers:
            for part in layer(name, kind, blobs, layout):
                f.write(part)


def he_normal(rng: np.random.Generator):
    return lambda shape, fan_in: rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2 / fan_in))


def published_layers(fill, trunk=TRUNK, fc=FC) -> list[tuple[str, str, list[np.ndarray]]]:
    """Weights in the published layout (deploy.prototxt's names and order), ``fill(shape, fan_in)``."""
    def conv(name, cout, cin, k, stride=0):  # stride > 0: a Deconvolution, without bias
        weight = fill((cout, cin, k, k), cin * k * k / max(stride, 1) ** 2)
        bias = fill((cout,), 50)  # about 0.2
        return (name, "Deconvolution", [weight]) if stride else (name, "Convolution", [weight, bias])

    layers, cin = [], 3
    for block, (n, cout) in enumerate(zip(BLOCKS, trunk), start=1):
        for i in range(1, n + 1):
            layers += [conv(f"conv{block}_{i}", cout, cin, 3), (f"relu{block}_{i}", "ReLU", [])]
            cin = cout
        layers.append((f"pool{block}", "Pooling", []))
    layers += [conv("fc6_cs", fc, trunk[4], 7), ("relu6_cs", "ReLU", []), conv("fc7_cs", fc, fc, 1),
               conv("score_fr", 20, fc, 1), conv("upscore2", 20, 20, 4, stride=2),
               conv("score_pool4", 20, trunk[3], 1), ("score_pool4c", "Crop", []),
               conv("upscore_pool4", 20, 20, 4, stride=2),
               conv("score_pool3", 20, trunk[2], 1), conv("upscore8", 20, 20, 16, stride=8),
               ("score", "Crop", [])]
    return layers


@pytest.fixture(scope="module")
def caffe_file(tmp_path_factory):
    """(path, {layer: blobs}) of one random-weight file in the modern layout."""
    layers = published_layers(he_normal(np.random.default_rng(0)))
    path = tmp_path_factory.mktemp("caffe") / "fcn-8s-cityscapes.caffemodel"
    write_caffemodel(path, layers)
    return path, {name: blobs for name, _, blobs in layers}


def small_model(path) -> PublishedFCN8s:
    model = PublishedFCN8s(TRUNK, FC)
    load_caffe_weights(model, iter_caffemodel(path), str(path))
    return model.eval()


# --- an independent NumPy forward of deploy.prototxt, in float64 -------------------------------


def np_conv(x, w, b, pad):
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[-2:], axis=(1, 2))  # C, H', W', k, k
    return np.tensordot(w, windows, axes=([1, 2, 3], [0, 3, 4])) + b[:, None, None]


def np_pool(x):
    """2x2 stride-2 max pool, output size ceil((h - 2) / 2) + 1 as Caffe computes it."""
    c, h, w = x.shape
    oh, ow = -(-(h - 2) // 2) + 1, -(-(w - 2) // 2) + 1
    padded = np.full((c, 2 * oh, 2 * ow), -np.inf)
    padded[:, :h, :w] = x
    return padded.reshape(c, oh, 2, ow, 2).max(axis=(2, 4))


def np_deconv(x, w, stride):
    """Caffe's Deconvolution (col2im): out[o, y*s + ky, x*s + kx] += w[i, o, ky, kx] * x[i, y, x]."""
    _, h, wd = x.shape
    k = w.shape[-1]
    out = np.zeros((w.shape[1], (h - 1) * stride + k, (wd - 1) * stride + k))
    for ky in range(k):
        for kx in range(k):
            out[:, ky:ky + (h - 1) * stride + 1:stride, kx:kx + (wd - 1) * stride + 1:stride] += \
                np.tensordot(w[:, :, ky, kx], x, axes=([0], [0]))
    return out


def np_crop(x, offset, like):
    return x[:, offset:offset + like.shape[1], offset:offset + like.shape[2]]


def np_forward(blobs, x):
    """``score`` of deploy.prototxt for one (3, H, W) preprocessed image."""
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    w = {name: [b.astype(np.float64) for b in bs] for name, bs in blobs.items()}
    h, pools = x.astype(np.float64), {}
    for block, n in enumerate(BLOCKS, start=1):
        for i in range(1, n + 1):
            h = relu(np_conv(h, *w[f"conv{block}_{i}"], pad=100 if block == i == 1 else 1))
        h = pools[block] = np_pool(h)
    h = relu(np_conv(relu(np_conv(h, *w["fc6_cs"], pad=0)), *w["fc7_cs"], pad=0))
    upscore2 = np_deconv(np_conv(h, *w["score_fr"], pad=0), w["upscore2"][0], 2)
    fuse_pool4 = upscore2 + np_crop(np_conv(pools[4], *w["score_pool4"], pad=0), 5, upscore2)
    upscore_pool4 = np_deconv(fuse_pool4, w["upscore_pool4"][0], 2)
    fuse_pool3 = upscore_pool4 + np_crop(np_conv(pools[3], *w["score_pool3"], pad=0), 9, upscore_pool4)
    return np_crop(np_deconv(fuse_pool3, w["upscore8"][0], 8), 31, x)


def np_preprocess(rgb_hwc):
    """The public script's preprocess: float32, RGB -> BGR, minus the mean, to (3, H, W)."""
    x = np.array(rgb_hwc, dtype=np.float32)[:, :, ::-1] - MEAN_BGR
    return x.transpose(2, 0, 1)


# --- the public script's arithmetic, transcribed literally (util.py of eval_cityscapes) --------


def literal_fast_hist(a, b, n):
    k = np.where((a >= 0) & (a < n))[0]
    bc = np.bincount(n * a[k].astype(int) + b[k], minlength=n**2)
    if len(bc) != n**2:
        return 0
    return bc.reshape(n, n)


def literal_get_scores(hist):
    acc = np.diag(hist).sum() / (hist.sum() + 1e-12)
    cl_acc = np.diag(hist) / (hist.sum(1) + 1e-12)
    iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist) + 1e-12)
    return acc, np.nanmean(cl_acc), np.nanmean(iu), cl_acc, iu


# --- reading the file --------------------------------------------------------------------------


def assert_blobs_loaded(model, layers):
    params = dict(model.named_parameters())
    assert len(params) == sum(len(blobs) for _, _, blobs in layers)
    for name, _, blobs in layers:
        for role, expected in zip(("weight", "bias"), blobs):
            assert torch.equal(params[f"{name}.{role}"].detach(), torch.from_numpy(expected)), f"{name} {role}"


@pytest.mark.parametrize("layout", ["modern", "legacy", "double"])
def test_every_blob_lands_in_its_tensor(tmp_path, layout):
    layers = published_layers(he_normal(np.random.default_rng(1)))
    path = tmp_path / "model.caffemodel"
    write_caffemodel(path, layers, layout)
    read = list(iter_caffemodel(path))
    assert [name for name, _ in read] == [name for name, _, _ in layers]  # blob-less layers too, in order
    def stored_shape(b):  # a legacy blob keeps Caffe's 4-D num/channels/height/width
        return (1,) * (4 - b.ndim) + b.shape if layout == "legacy" else b.shape

    for (_, stored), (_, _, blobs) in zip(read, layers):
        assert [s.shape for s in stored] == [stored_shape(b) for b in blobs]
    assert_blobs_loaded(small_model(path), layers)


def test_the_published_widths_load_whole(tmp_path):
    """A file of the real size (540 MB: VGG-16's widths, 4096 in fc6_cs/fc7_cs) through
    load_published_fcn: every tensor of the real network comes from the file. The weights repeat a
    random pattern of prime length, so a blob put in the wrong tensor cannot pass; lengths over
    2**28 (fc6_cs: 411 MB) need 5-byte varints. About 4 s on an idle 2-core machine (10-15 s on a
    loaded one) and 2 GB of memory at the peak."""
    rng = np.random.default_rng(3)
    layers = published_layers(lambda shape, _: np.resize(rng.standard_normal(4099, dtype=np.float32), shape),
                              (64, 128, 256, 512, 512), 4096)
    path = tmp_path / "fcn-8s-cityscapes.caffemodel"
    write_caffemodel(path, layers)
    assert path.stat().st_size > 537e6
    model = load_published_fcn(path)
    assert not model.training and next(model.parameters()).device.type == "cpu"
    assert_blobs_loaded(model, layers)


def one_line_error(call, *fragments):
    with pytest.raises(CgbenchError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_a_narrow_file_is_refused_by_the_published_loader(caffe_file):
    path, _ = caffe_file
    one_line_error(lambda: load_published_fcn(path), str(path),
                   "layer conv1_1 weight has shape (4, 3, 3, 3), expected (64, 3, 3, 3)")


def edited(layers, name, blobs):
    return [(n, kind, blobs if n == name else b) for n, kind, b in layers]


@pytest.mark.parametrize("change, fragments", [
    (lambda ls: edited(ls, "score_pool3", [np.zeros((20, 9, 1, 1), np.float32), np.zeros(20, np.float32)]),
     ["layer score_pool3 weight has shape (20, 9, 1, 1), expected (20, 8, 1, 1)"]),
    (lambda ls: edited(ls, "upscore8", [np.zeros((20, 20, 16, 16), np.float32), np.zeros(20, np.float32)]),
     ["layer upscore8 has 2 blobs, expected 1 (weight)"]),
    (lambda ls: [layer for layer in ls if layer[0] != "fc7_cs"], ["layer fc7_cs missing"]),
    (lambda ls: [layer for layer in ls if not layer[0].startswith("conv5")], ["layer conv5_1 and 2 more missing"]),
    (lambda ls: ls + [("score_extra", "Convolution", [np.zeros((20, 20, 1, 1), np.float32)])],
     ["layer score_extra holds weights the published FCN-8s has no place for"]),
    (lambda ls: ls + [ls[0]], ["layer conv1_1 appears twice"]),
])
def test_a_wrong_layout_is_one_line_naming_the_layer(tmp_path, change, fragments):
    path = tmp_path / "wrong.caffemodel"
    layers = published_layers(he_normal(np.random.default_rng(4)))
    write_caffemodel(path, change(layers))
    one_line_error(lambda: small_model(path), str(path), "not fcn-8s-cityscapes.caffemodel", *fragments)


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_a_truncated_file_is_one_line(tmp_path, caffe_file, cut):
    path, _ = caffe_file
    data = path.read_bytes()
    short = tmp_path / "short.caffemodel"
    short.write_bytes(data[:int(len(data) * cut)])
    one_line_error(lambda: small_model(short), str(short), "truncated", "download")


def test_not_a_caffemodel_is_one_line(tmp_path):
    png = tmp_path / "photo.caffemodel"
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    one_line_error(lambda: list(iter_caffemodel(png)), "not a Caffe .caffemodel")
    one_line_error(lambda: list(iter_caffemodel(tmp_path / "absent.caffemodel")), "cannot read", "absent.caffemodel")


# --- the network -------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(1, 1), (37, 53), (65, 131)])
def test_output_size_equals_input_size(caffe_file, hw):
    with torch.inference_mode():
        out = small_model(caffe_file[0])(torch.randn(2, 3, *hw) * 50)
    assert out.shape == (2, 20, *hw)


@pytest.mark.parametrize("hw", [(37, 53), (24, 70)])
def test_forward_matches_the_numpy_reference(caffe_file, hw):
    """float32 PyTorch against float64 NumPy, crops and all; both from the preprocessed image."""
    path, blobs = caffe_file
    image = np.random.default_rng(5).integers(0, 256, (*hw, 3), dtype=np.uint8)
    expected = np_forward(blobs, np_preprocess(image))
    x = preprocess(torch.from_numpy(image)[None])
    np.testing.assert_array_equal(x[0].numpy(), np_preprocess(image))
    with torch.inference_mode():
        out = small_model(path)(x)[0].double().numpy()
    assert expected.std() > 1
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_preprocess_refuses_float_images():
    with pytest.raises(ValueError, match="uint8"):
        preprocess(torch.zeros(1, 3, 4, 4))


# --- the public script's arithmetic ------------------------------------------------------------


def test_fast_hist_quirks_by_hand():
    gt = torch.tensor([0, 1, 17, 255, 5, 5], dtype=torch.uint8)
    pred = torch.tensor([19, 1, 19, 3, 5, 4])
    expected = np.zeros((19, 19), dtype=np.int64)
    expected[1, 0] += 1  # gt 0 predicted 19: bin 0*19 + 19 = row 1, column 0
    expected[1, 1] += 1
    expected[18, 0] += 1  # gt 17 predicted 19: bin 17*19 + 19 = 342 = row 18, column 0
    expected[5, 5] += 1  # (255 is not counted)
    expected[5, 4] += 1
    assert public_fast_hist(gt, pred).tolist() == expected.tolist()
    np.testing.assert_array_equal(literal_fast_hist(gt.numpy(), pred.numpy().astype(np.uint8), 19), expected)
    # gt 18 predicted 19 is bin 361: 362 bins, and the script drops the image
    assert public_fast_hist(torch.tensor([18, 0]), torch.tensor([19, 0])) is None
    assert literal_fast_hist(np.array([18, 0]), np.array([19, 0]), 19) == 0


# image A: gt 0 0 1 18 / pred 19 0 1 19 (gt 18 meets 19: dropped by the script)
# image B: gt 0 2 255 / pred 19 2 19 (kept; its gt-0 pixel predicted 19 counts as gt 1 predicted 0)
IMAGE_A = (torch.tensor([[[0, 0], [1, 18]]]), torch.tensor([[[19, 0], [1, 19]]]))
IMAGE_B = (torch.tensor([[[0, 2, 255]]]), torch.tensor([[[19, 2, 19]]]))


def accumulate(strict):
    metric = PublicScriptConfusion(strict=strict)
    for gt, pred in (IMAGE_A, IMAGE_B):
        metric.update(gt, pred)
    return metric


def test_public_mode_by_hand():
    metric = accumulate(strict=False)
    result = metric.compute()
    hist = np.zeros((19, 19), dtype=np.int64)
    hist[1, 0] = hist[2, 2] = 1  # image B only
    assert metric.hist.tolist() == hist.tolist()
    assert (result.images_scored, result.images_dropped, result.pixels_predicted_19) == (1, 1, 3)
    s = result.scores
    assert s.per_pixel_acc == pytest.approx(1 / 2)
    assert s.per_class_acc == pytest.approx(1 / 19)  # class 2 scores 1, every other class 0
    assert s.class_iou == pytest.approx(1 / 19)  # class 2: 1 / (1 + 1 - 1)


def test_strict_mode_by_hand():
    metric = accumulate(strict=True)
    result = metric.compute()
    # rows gt, columns prediction, column 19 = predicted 19: gt 0 -> 0 once, 19 twice; 1 -> 1; 2 -> 2; 18 -> 19
    assert (result.images_scored, result.images_dropped, result.pixels_predicted_19) == (2, 0, 3)
    s = result.scores
    assert s.per_pixel_acc == pytest.approx(3 / 6)
    recall = np.zeros(19)
    recall[[0, 1, 2]] = 1 / 3, 1, 1  # class 18: 0 of 1
    iou = np.zeros(19)
    iou[[0, 1, 2]] = 1 / (3 + 1 - 1), 1, 1  # class 18: 0 / (1 + 0 - 0)
    np.testing.assert_allclose(s.per_class_acc_vec, recall)
    np.testing.assert_allclose(s.iou_vec, iou)
    assert s.per_class_acc == pytest.approx(recall.mean()) and s.class_iou == pytest.approx(iou.mean())
    present = metric.compute(present_only=True).scores
    assert present.evaluated_classes == (0, 1, 2, 18)
    assert present.class_iou == pytest.approx((1 / 3 + 1 + 1 + 0) / 4)


def test_random_images_match_the_literal_script_and_a_strict_reference():
    rng = np.random.default_rng(7)
    gt = rng.integers(0, 20, (40, 7, 9)).astype(np.uint8)
    gt[gt == 19] = 255
    pred = rng.integers(0, 20, gt.shape).astype(np.uint8)
    public, strict = PublicScriptConfusion(), PublicScriptConfusion(strict=True)
    for metric in public, strict:
        for batch in range(0, 40, 8):
            metric.update(torch.from_numpy(gt[batch:batch + 8]), torch.from_numpy(pred[batch:batch + 8]).long())
    per_image = [literal_fast_hist(g.ravel(), p.ravel(), 19) for g, p in zip(gt, pred)]
    dropped = sum(isinstance(h, int) for h in per_image)
    assert 0 < dropped < 40
    literal = np.zeros((19, 19)) + sum(per_image)
    assert public.hist.numpy().tolist() == literal.tolist()
    result = public.compute()
    assert (result.images_dropped, result.images_scored) == (dropped, 40 - dropped)
    acc, cl_acc, iou, _, _ = literal_get_scores(literal)
    assert (result.scores.per_pixel_acc, result.scores.per_class_acc, result.scores.class_iou) == \
        pytest.approx((acc, cl_acc, iou), rel=1e-12)
    # strict, from its definition: a 19x20 count; recall over the whole row, IoU's column over the 19 classes
    labelled = gt < 19
    counts = np.zeros((19, 20))
    np.add.at(counts, (gt[labelled], pred[labelled]), 1)
    diag = np.diag(counts[:, :19])
    s = strict.compute().scores
    assert result.pixels_predicted_19 == strict.compute().pixels_predicted_19 == counts[:, 19].sum()
    assert s.per_pixel_acc == pytest.approx(diag.sum() / counts.sum())
    assert s.per_class_acc == pytest.approx(np.mean(diag / counts.sum(1)))
    assert s.class_iou == pytest.approx(np.mean(diag / (counts.sum(1) + counts[:, :19].sum(0) - diag)))


def test_update_refuses_what_is_not_an_argmax_over_20():
    with pytest.raises(ValueError, match="0..19"):
        PublicScriptConfusion().update(torch.zeros(1, 2, 2, dtype=torch.uint8), torch.full((1, 2, 2), 20))
    with pytest.raises(ValueError, match="shape"):
        PublicScriptConfusion().update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 3, dtype=torch.long))


# --- the whole scoring path (the bar: a random-weight file, scored, against the references) -----


def test_scores_match_the_numpy_network_and_the_public_formulas(caffe_file):
    path, blobs = caffe_file
    rng = np.random.default_rng(6)
    generated = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)  # (B, s, s, 3), the generator's size
    hw = (37, 53)  # the labels' size: the generated images are resized up to it
    # the public script, image by image: scipy.misc.imresize (= Pillow's bilinear on uint8), preprocess, net
    logits = [np_forward(blobs, np_preprocess(Image.fromarray(g).resize(hw[::-1], Image.Resampling.BILINEAR)))
              for g in generated]
    top2 = np.sort(np.stack(logits), axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0]).min() > 1e-6  # no near-tie for float64 rounding to flip
    reference = np.stack(logits).argmax(1).astype(np.uint8)
    labels = rng.integers(0, 19, (3, *hw)).astype(np.uint8)
    labels[:, :3] = 255
    labels[0][reference[0] == 19] = 18  # image 0: ground truth 18 predicted 19, dropped by the script
    labels[1:][(reference[1:] == 19) & (labels[1:] == 18)] = 17  # the others: kept, with shifted pixels
    assert (reference[1:][labels[1:] < 19] == 19).any()

    model = small_model(path).double()  # float64 as the reference, so the arg-max cannot differ
    pred = published_fcn_predict(model, torch.from_numpy(generated), hw, batch_size=2)
    assert pred.dtype == torch.int64 and pred.shape == (3, *hw)
    np.testing.assert_array_equal(pred.numpy(), reference)
    metric = PublicScriptConfusion()
    metric.update(torch.from_numpy(labels), pred)
    result = metric.compute()

    hist_perframe = np.zeros((19, 19))
    for label, out in zip(labels, reference):
        hist_perframe += literal_fast_hist(label.flatten(), out.flatten(), 19)
    acc, cl_acc, iou, _, _ = literal_get_scores(hist_perframe)
    assert (result.scores.per_pixel_acc, result.scores.per_class_acc, result.scores.class_iou) == \
        pytest.approx((acc, cl_acc, iou), rel=1e-12)
    assert (result.images_dropped, result.images_scored) == (1, 2)
    assert result.pixels_predicted_19 == ((labels < 19) & (reference == 19)).sum()


def test_the_api_scores_the_published_fcn_as_the_plugin_does(caffe_file):
    """cgbench.metrics.FCNScore given the published FCN-8s gets the fcn plugin's numbers exactly: the
    public script's resize, BGR minus the mean, arg-max over 20 and per-image histograms."""
    model = small_model(caffe_file[0])
    rng = np.random.default_rng(9)
    generated = torch.from_numpy(rng.integers(0, 256, (4, 3, 16, 16), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 19, (4, 37, 53)).astype(np.uint8))
    labels[:, :3] = 255
    segmenter = Segmenter(model, "published (random weights)", published=True)
    plugin = discover()["fcn"](EvalContext(None, None, torch.device("cpu"), n_samples=0,
                                           loaders={"fcn": lambda: segmenter}))
    plugin.update(Batch(torch.arange(4), list("abcd"), labels, None, generated))
    want = plugin.compute()
    api = FCNScore(fcn=model)
    api.update(generated[:2], labels[:2])
    api.update(generated[2:].permute(0, 2, 3, 1), labels[2:])  # channels last, as a loop may hold them
    got = api.compute()
    assert {k: getattr(got, k) for k in SCORE_METRICS} == want.metrics
    pred = published_fcn_predict(model, generated, (37, 53))
    assert not torch.equal(pred, fcn_predict(model, generated, (37, 53)))  # the [-1, 1] path would differ
    for strict in (False, True):
        reference = PublicScriptConfusion(strict=strict)
        reference.update(labels, pred)
        expected = reference.compute().scores
        scored = FCNScore(fcn=Segmenter(model, "published", published=True, strict=strict))
        scored.update(generated, labels)
        assert [getattr(scored.compute(), k) for k in SCORE_METRICS] == [getattr(expected, k) for k in SCORE_METRICS]


def test_predict_layouts_batches_and_progress(caffe_file):
    model = small_model(caffe_file[0]).double()
    generated = torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(8))
    bar = tqdm(total=3, file=io.StringIO())
    channels_first = published_fcn_predict(model, generated, (33, 41), batch_size=1, progress=bar)
    assert bar.n == 3
    channels_last = published_fcn_predict(model, generated.permute(0, 2, 3, 1), (33, 41), batch_size=3)
    assert torch.equal(channels_first, channels_last)


def test_resize_as_public_script():
    images = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    assert resize_as_public_script(images, (5, 7)) is images  # already at the label size: untouched
    resized = resize_as_public_script(images.permute(0, 2, 3, 1), (9, 11))
    assert resized.dtype == torch.uint8 and resized.shape == (2, 3, 9, 11)
    # upsampling, the first output pixel's centre lies within half a pixel of the first input pixel's
    # centre, nearer than the bilinear filter's reach to the second: it is the corner's value exactly
    assert torch.equal(resized[:, :, 0, 0], images[:, :, 0, 0])


def test_bench_published_fcn_reports_images_per_second(caffe_file):
    result = bench_published_fcn("cpu", height=33, width=41, repeats=1, generated_size=16,
                                 model=small_model(caffe_file[0]))
    assert result["images_per_s"] == pytest.approx(1 / result["seconds_per_image"])
    assert result["seconds_per_image"] > 0 and result["input"] == "16x16 -> 41x33"
