"""Bad input through the real CLI (issue 26): every file and field checked by type and size before
use, in one line (exit 2), with nothing recorded; and what good input of an unusual kind gets
(images of every mode Pillow opens, a moved dataset, runs of several settings, unicode names)."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import Param
from PIL import Image

from conftest import assert_one_line_error, run_cli
from cgbench.cli import main
from cgbench.data.images import label_ids, open_image, rgb_array
from cgbench.errors import DataError
from cgbench.models.caffemodel import iter_caffemodel
from cgbench.protocol import Tags
from cgbench.tracking import RunTracker


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def nothing_recorded(tracking_uri: str) -> bool:
    client = MlflowClient(tracking_uri)
    return not client.search_runs([e.experiment_id for e in client.search_experiments()])


# --- config values (case 5) -------------------------------------------------------------------------------

BOMB = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, fragments", [
    (BOMB + "lr: *i\n", ["uses a YAML alias (*a) at line 2", "write the value out"]),
    (BOMB + "method: [*i, *i]\n", ["uses a YAML alias"]),
    ("method: [cyclegan, pix2pix]\n", ["config key 'method'", "takes text, not a list of 2 item(s)"]),
    ("lr: {value: 1}\n", ["config key 'lr'", "takes a number, not a mapping"]),
    ("lr:\n", ["config key 'lr'", "not an empty value"]),
    ("method: " + "x" * 5000 + "\n", ["config key 'method'", "5000 characters long"]),
    ("seed: " + "9" * 5000 + "\n", ["thousands of digits"]),
    ("? [a, b]\n: 1\n", ["not valid YAML"]),
    ("5: 1\n", ["unknown config key 5"]),
    ("lr: " + "[" * 20000 + "\n", ["nests lists or mappings too deeply"]),
])
def test_a_config_value_that_is_not_one_bounded_scalar_is_one_line(text, fragments, tmp_path, tracking_uri):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    out = invoke("run", "--preset", "tiny", "--config", config, "--tracking-uri", tracking_uri, "--no-progress")
    assert_one_line_error(out, *fragments)
    assert len(out.stderr) < 1000, out.stderr  # the value is never echoed beyond a short prefix
    assert nothing_recorded(tracking_uri)


def test_yaml_on_and_off_are_the_speed_switches_words(tmp_path):
    from cgbench.config import resolve

    config = tmp_path / "speed.yaml"
    config.write_text("amp: off\nfused_adam: on\n")
    assert (resolve("tiny", config).amp, resolve("tiny", config).fused_adam) == ("off", "on")


# --- sweep specs (cases 6 and 7) --------------------------------------------------------------------------

SPEC_FIELDS = {"name": "mini", "preset": "tiny", "seeds": "[0]", "evaluators": "[seg]",
               "rows": "\n  - {row: cyclegan, ablation: cyclegan}"}
SPEC = "".join(f"{key}: {value}\n" for key, value in SPEC_FIELDS.items())


@pytest.mark.parametrize("field, value, fragments", [
    ("tables", "[x]", ["tables: in", "table numbers from 1 to 5", "not 'x'"]),
    ("tables", "5", ["tables: in", "must be a list such as [4, 5], not 5"]),
    ("evaluators", "5", ["evaluators: in", "must be a list", "not 5"]),
    ("evaluators", "[[seg]]", ["evaluators: in", "must be text"]),
    ("seeds", "3", ["seeds: in", "a list of seeds"]),
    ("seeds", "[0, 0.5]", ["seeds: in", "integers from 0 to 4294967295, not 0.5"]),
    ("seeds", "[99999999999]", ["seeds: in", "not 99999999999"]),
    ("set", "[1, 2]", ["set: in", "a mapping of config keys, not a list"]),
    ("set", "{lr: [1, 2]}", ["config key 'lr'", "takes a number, not a list"]),
    ("name", "[1]", ["name: in", "must be text, not a list"]),
    ("experiment", "{a: 1}", ["experiment: in", "must be text, not a mapping"]),
    ("description", "[a]", ["description: in", "must be text"]),
    ("preset", "[tiny]", ["preset: in", "must be text"]),
    ("preset", "true", ["preset: in", "must be text, not True"]),
    ("rows", "5", ["rows: in", "must be a list", "not 5"]),
    ("rows", "\n  - {row: [a]}", ["the row: name of row 1", "must be text"]),
    ("rows", "\n  - {row: a, n_blocks: [1]}", ["config key 'n_blocks' in row 'a'", "takes an integer, not a list"]),
    ("rows", "\n  - 5", ["row 1 of", "needs a row: name"]),
    ("rows", "\n  - {row: a, lr: *i}", ["sweep spec", "uses a YAML alias"]),
])
def test_every_spec_field_is_checked_by_type_before_use(field, value, fragments, tmp_path, tracking_uri, synth_dir):
    spec = tmp_path / "spec.yaml"
    text = "".join(f"{key}: {value if key == field else kept}\n" for key, kept in {**SPEC_FIELDS, field: value}.items())
    spec.write_text((BOMB if "*i" in value else "") + text)
    out = invoke("sweep", spec, "--data", synth_dir, "--tracking-uri", tracking_uri, "--no-progress")
    assert_one_line_error(out, *fragments)
    assert nothing_recorded(tracking_uri)


@pytest.mark.parametrize("bad_row, fragments", [
    ("{row: no-gan, ablation: no-gan}", ["row 'no-gan' of", "unknown ablation 'no-gan'", "valid ablations"]),
    ("{row: pix, method: cogan, norm: batch}", ["row 'pix' of", "method 'cogan' builds instance norm only"]),
    ("{row: small, image_size: 16, load_size: 16}", ["row 'small' of", "image_size 16"]),
    ("{row: elsewhere, data: /nowhere/at/all}", ["dataset folder '/nowhere/at/all' does not exist"]),
])
def test_a_bad_row_stops_the_sweep_before_anything_is_recorded(bad_row, fragments, tmp_path, tracking_uri,
                                                               synth_dir):
    """A real sweep (not --dry-run): before, it recorded the parent and the nulls, trained the good
    rows and only then failed the bad row's child ("run None", exit 1)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC + f"  - {bad_row}\nset: {{data: '{synth_dir}'}}\n")  # --data would override every row's
    out = invoke("sweep", spec, "--tracking-uri", tracking_uri, "--no-progress")
    assert_one_line_error(out, *fragments)
    assert nothing_recorded(tracking_uri)


# --- images (cases 8, 9, 14) ------------------------------------------------------------------------------


def _colours(shape=(6, 8)) -> np.ndarray:
    rng = np.random.default_rng(0)
    palette = np.array([[128, 64, 128], [70, 70, 70], [0, 0, 142], [107, 142, 35]], np.uint8)
    return palette[rng.integers(0, len(palette), shape)]


def _save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def _exact_cases(tmp_path: Path):
    rgb = _colours()
    grey = rgb[..., 0]
    opaque = np.dstack([rgb, np.full(grey.shape, 255, np.uint8)])
    yield "RGB", _save(Image.fromarray(rgb), tmp_path / "rgb.png"), rgb
    yield "L", _save(Image.fromarray(grey), tmp_path / "l.png"), np.dstack([grey] * 3)
    yield "1", _save(Image.fromarray(grey > 100), tmp_path / "bits.png"), np.dstack([(grey > 100) * 255] * 3)
    yield "P", _save(Image.fromarray(rgb).quantize(4, dither=Image.Dither.NONE), tmp_path / "p.png"), rgb
    yield "RGBA", _save(Image.fromarray(opaque), tmp_path / "rgba.png"), rgb
    la = Image.merge("LA", [Image.fromarray(grey), Image.fromarray(opaque[..., 3])])
    yield "LA", _save(la, tmp_path / "la.png"), np.dstack([grey] * 3)
    yield "I;16", _save(Image.fromarray(grey.astype(np.uint16)), tmp_path / "i16.png"), np.dstack([grey] * 3)


def test_every_mode_with_an_exact_rgb_converts_exactly(tmp_path):
    modes = []
    for mode, path, expected in _exact_cases(tmp_path):
        modes.append(Image.open(path).mode)
        array = rgb_array(path)
        assert array.dtype == np.uint8 and array.flags.writeable, mode
        np.testing.assert_array_equal(array, expected, err_msg=mode)
    assert modes == ["RGB", "L", "1", "P", "RGBA", "LA", "I;16"]  # Pillow reopens each in the mode written


def _refused_cases(tmp_path: Path):
    rgb = _colours()
    transparent = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    transparent[0, 0, 3] = 0
    wide = (rgb[..., 0].astype(np.uint16) * 257)
    yield _save(Image.fromarray(transparent), tmp_path / "transparent.png"), "1 transparent pixel(s)"
    yield _save(Image.fromarray(wide), tmp_path / "wide.png"), "grey image with values of"
    yield _save(Image.fromarray(rgb).convert("CMYK"), tmp_path / "cmyk.jpg"), "is a CMYK image"
    yield _save(Image.fromarray(rgb[..., 0].astype(np.float32) + 0.5), tmp_path / "float.tiff"), "grey image"
    palette = Image.fromarray(rgb).quantize(4, dither=Image.Dither.NONE)
    yield _save(palette, tmp_path / "palette.png", transparency=palette.getpixel((0, 0))), "transparent pixel(s)"
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    yield empty, "(an empty file)"
    text = tmp_path / "text.png"
    text.write_text("not an image")
    yield text, "(not a PNG or JPEG image)"


def test_every_other_mode_or_file_is_refused_in_one_line(tmp_path):
    for path, fragment in _refused_cases(tmp_path):
        with pytest.raises(DataError) as err:
            rgb_array(path)
        message = str(err.value)
        assert fragment in message and str(path) in message and "\n" not in message, message


def test_label_ids_take_integer_grey_or_palette_indices_only(tmp_path):
    ids = np.random.default_rng(1).integers(0, 34, (5, 7)).astype(np.uint8)
    for mode, image in (("L", Image.fromarray(ids)), ("I;16", Image.fromarray(ids.astype(np.uint16)))):
        np.testing.assert_array_equal(label_ids(image, tmp_path / "x.png"), ids, err_msg=mode)
    for image, fragment in ((Image.fromarray(_colours()), "is a RGB image"),
                            (Image.fromarray(ids.astype(np.uint16) + 300), "ids up to")):
        with pytest.raises(DataError, match=fragment):
            label_ids(image, tmp_path / "x.png")
    with pytest.raises(DataError, match="cannot read image"):
        open_image(tmp_path / "x.png", b"\x89PNG\r\n\x1a\n")


def _val_images(synth_dir: Path, folder: Path, suffix: str = "_gtFine_color") -> list[Path]:
    """The validation colour label maps as generated photo→labels images (exact: they score 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for source in sorted((synth_dir / "gtFine" / "val").rglob("*_gtFine_color.png")):
        target = folder / source.name.replace("_gtFine_color", suffix)
        shutil.copy(source, target)
        out.append(target)
    return out


def test_eval_images_of_several_modes_score_exactly_with_a_quiet_stderr(synth_dir, tmp_path):
    """Palette and opaque RGBA copies of the true label maps score 1 like RGB ones; stderr holds no
    warning (two "NumPy array is not writable" lines before); the printed command pastes."""
    store = tmp_path / "a store with spaces"
    store.mkdir()
    uri = f"sqlite:///{store}/mlflow.db"
    images = _val_images(synth_dir, tmp_path / "images")
    for i, path in enumerate(images):
        rgb = Image.open(path).convert("RGB")
        (rgb.quantize(256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE) if i % 2 else
         rgb.convert("RGBA")).save(path)
    out = run_cli("eval", "--images", str(tmp_path / "images"), "--direction", "photo2labels", "--data",
                  str(synth_dir), "--image-size", "32", "--tracking-uri", uri, "--no-progress", cwd=tmp_path)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert "seg          photo2labels      1.000     1.000   1.000" in out.stdout, out.stdout
    command = out.stdout.split("See it with: ")[1].split(", then open")[0]
    assert shlex.split(command) == ["mlflow", "ui", "--backend-store-uri", uri]


def _bad_first(folder: Path) -> str:
    (folder / "0000_empty_gtFine_color.png").write_bytes(b"")  # first in sort order
    return "0000_empty_gtFine_color.png (an empty file)"


def _bad_last(folder: Path) -> str:
    images = sorted(folder.iterdir())
    images[-1].write_text("not an image")
    return f"{images[-1].name} (not a PNG or JPEG image)"


def _transparent(folder: Path) -> str:
    path = sorted(folder.iterdir())[2]
    image = Image.open(path).convert("RGBA")
    image.putpixel((0, 0), (0, 0, 0, 0))
    image.save(path)
    return f"{path.name} has 1 transparent pixel(s)"


def _twice(folder: Path) -> str:
    first = sorted(folder.iterdir())[0]
    (folder / "copy").mkdir()
    shutil.copy(first, folder / "copy" / first.name)
    frame = first.name.removesuffix("_gtFine_color.png")
    return f"frame {frame} has 2 images in {folder}: copy/{first.name}, {first.name}; keep one image per frame"


@pytest.mark.parametrize("spoil", [_bad_first, _bad_last, _transparent, _twice])
def test_eval_images_refuses_a_bad_folder_in_one_line(spoil, synth_dir, tmp_path, tracking_uri):
    folder = tmp_path / "images"
    _val_images(synth_dir, folder)
    for path in folder.iterdir():  # squares, so that the size is read from the first image
        Image.open(path).convert("RGB").resize((32, 32), Image.NEAREST).save(path)
    fragment = spoil(folder)
    out = invoke("eval", "--images", folder, "--direction", "photo2labels", "--data", synth_dir, "--tracking-uri",
                 tracking_uri, "--no-progress")
    assert_one_line_error(out, fragment)
    assert nothing_recorded(tracking_uri)


@pytest.mark.parametrize("mode, fragment", [("I;16", "grey image with values of"), ("CMYK", "is a CMYK image")])
def test_a_dataset_image_without_an_exact_rgb_is_refused(mode, fragment, synth_dir, tmp_path, tracking_uri):
    data = shutil.copytree(synth_dir, tmp_path / "data")
    photo = sorted((data / "leftImg8bit" / "train").rglob("*.png"))[3]
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    image = Image.fromarray(rgb[..., 1].astype(np.uint16) * 257) if mode == "I;16" else Image.fromarray(rgb).convert(mode)
    if mode == "CMYK":
        photo.unlink()
        photo = photo.with_suffix(".jpg")
    image.save(photo)
    out = invoke("run", "--preset", "tiny", "--data", data, "--tracking-uri", tracking_uri, "--no-progress")
    assert_one_line_error(out, photo.name, fragment)
    assert nothing_recorded(tracking_uri)


# --- a caffemodel's shapes (case 13) ----------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _caffemodel(path: Path, dims: list[int], values: int) -> Path:
    shape = _field(1, b"".join(_varint(d) for d in dims))
    blob = _field(7, shape) + _field(5, np.zeros(values, "<f4").tobytes())
    path.write_bytes(_field(100, _field(1, b"conv1_1") + _field(7, blob)))
    return path


@pytest.mark.parametrize("dims, values, fragment", [
    ([2**32, 2**32], 0, "(4294967296, 4294967296) (2 axes) holds 0 values"),  # the product overflows int64 to 0
    ([2**62, 4, 0], 0, "holds 0 values"),
    ([2**63 + 1, 2**63 + 1], 4, "holds 4 values"),
    ([1] * 40, 1, "more than Caffe's 32 axes"),
    ([2, 3], 5, "(2, 3) (2 axes) holds 5 values"),
])
def test_a_blob_shape_beyond_its_values_is_one_line(dims, values, fragment, tmp_path):
    path = _caffemodel(tmp_path / "bad.caffemodel", dims, values)
    with pytest.raises(DataError) as err:
        list(iter_caffemodel(path))
    assert fragment in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_eval_with_a_caffemodel_of_an_overflowing_shape_is_one_line(synth_dir, tmp_path, tracking_uri):
    folder = tmp_path / "images"
    for path in _val_images(synth_dir, folder, "_leftImg8bit"):
        Image.open(path).convert("RGB").resize((32, 32)).save(path)
    model = _caffemodel(tmp_path / "fcn-8s-cityscapes.caffemodel", [2**32, 2**32, 1, 1], 0)
    out = invoke("eval", "--images", folder, "--direction", "labels2photo", "--data", synth_dir, "--fcn",
                 f"caffe:{model}", "--tracking-uri", tracking_uri, "--no-progress")
    assert_one_line_error(out, str(model), "holds 0 values", "download fcn-8s-cityscapes.caffemodel again")
    assert nothing_recorded(tracking_uri)


# --- a moved dataset (case 10) ----------------------------------------------------------------------------


def test_a_run_resumes_on_its_moved_dataset_and_refuses_another(synth_dir, tmp_path, tracking_uri):
    old = shutil.copytree(synth_dir, tmp_path / "old")
    trained = invoke("run", "--preset", "tiny", "--data", old, "--tracking-uri", tracking_uri, "--no-progress")
    assert trained.exit_code == 0, trained.output + trained.stderr
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("cgbench").experiment_id])
    run_id = run.info.run_id
    new = old.rename(tmp_path / "moved here")

    lost = invoke("run", "--resume", run_id, "--tracking-uri", tracking_uri, "--no-progress")
    assert_one_line_error(lost, "does not exist", "--data")
    other = shutil.copytree(new, tmp_path / "other")
    victim = sorted((other / "leftImg8bit" / "val").rglob("*.png"))[0]
    Image.open(victim).rotate(90).save(victim)
    refused = invoke("run", "--resume", run_id, "--data", other, "--tracking-uri", tracking_uri, "--no-progress")
    assert_one_line_error(refused, f"validation data at {other}", f"(digest {run.data.tags[Tags.VAL_DIGEST]})")
    assert client.get_run(run_id).data.tags[Tags.DATA_ROOT] == str(old.resolve())

    moved = invoke("run", "--resume", run_id, "--data", new, "--tracking-uri", tracking_uri, "--no-progress")
    assert moved.exit_code == 0, moved.output + moved.stderr
    tags = client.get_run(run_id).data.tags
    assert (tags[Tags.DATA_ROOT], tags[Tags.DATA_MOVED_FROM]) == (str(new.resolve()), str(old.resolve()))
    again = invoke("run", "--resume", run_id, "--tracking-uri", tracking_uri, "--no-progress")  # the recorded folder
    assert again.exit_code == 0, again.output + again.stderr
    scored = invoke("eval", "--run", run_id, "--metric", "seg", "--tracking-uri", tracking_uri, "--no-progress")
    assert scored.exit_code == 0 and f"val images of {new.resolve()}" in scored.output, scored.output + scored.stderr


# --- reports: mixed settings, names (cases 11, 15) --------------------------------------------------------

L2P, P2L = "eval/labels2photo", "eval/photo2labels"


def make_run(uri: str, experiment: str, row: str, seed: int, pixel: float, **params) -> str:
    """A finished, evaluated cyclegan run of ``row`` recorded as ``cgbench run`` records its config."""
    from cgbench.config import resolve

    tags = {"cgbench.method": "cyclegan", "cgbench.row": row, "cgbench.ablation": "cyclegan", "cgbench.seed": str(seed),
            "cgbench.dataset": "synthcity", "cgbench.dataset_digest": "d1", "cgbench.preset": "tiny",
            "cgbench.image_size": str(params.get("image_size", 32)), "cgbench.eval.fcn.fcn": "run fcn0"}
    config = resolve("tiny", sets=params).to_dict()
    tracker = RunTracker.create(uri, experiment, f"{row}-seed{seed}", tags)
    MlflowClient(uri).log_batch(tracker.run_id, params=[Param(k, str(v)) for k, v in config.items()])
    tracker.log_metrics({f"{direction}/{metric}": pixel / k for direction in (L2P, P2L)
                         for metric, k in (("per_pixel_acc", 1), ("per_class_acc", 3), ("class_iou", 5))}, 4)
    tracker.end("FINISHED")
    return tracker.run_id


def test_runs_of_one_row_in_two_settings_are_refused_or_split(tmp_path, tracking_uri):
    small = [make_run(tracking_uri, "sizes", "cyclegan", seed, 0.5, image_size=32) for seed in (0, 1)]
    large = make_run(tracking_uri, "sizes", "cyclegan", 0, 0.6, image_size=64, load_size=72)
    repeat = make_run(tracking_uri, "sizes", "cyclegan", 1, 0.55, image_size=64, load_size=72)
    older = make_run(tracking_uri, "sizes", "no-cycle", 0, 0.3, log_every=3)  # differs in no setting:
    make_run(tracking_uri, "sizes", "no-cycle", 0, 0.35)  # a repeat, the newest counts
    args = ["report", "--experiment", "sizes", "--table", "4", "--tracking-uri", tracking_uri, "--no-log",
            "--out", tmp_path / "out"]

    mixed = invoke(*args)
    assert_one_line_error(mixed, "row 'cyclegan'", "differ in setting (32 px: ", "; 64 px: ", "--split-settings",
                          *(run_id[:8] for run_id in (*small, large, repeat)))
    split = invoke(*args, "--split-settings")
    assert split.exit_code == 0, split.output + split.stderr
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1] for line in split.output.splitlines()
            if line.startswith("| ")}
    assert rows["CycleGAN (32 px)"] == "2" and rows["CycleGAN (64 px)"] == "2" and rows["GAN alone"] == "1"
    assert "1 evaluated run(s) repeat a row and seed" in split.output and older[:8] in split.output
    assert "CycleGAN (32 px)" in (tmp_path / "out" / "sizes.html").read_text()


def test_unicode_names_survive_in_file_names_and_html_stays_text_in_markdown(tmp_path, tracking_uri):
    from urllib.parse import unquote

    name = "exp/ünï 名"
    make_run(tracking_uri, name, "<img src=x onerror=alert(1)>", 0, 0.5)
    make_run(tracking_uri, name, "cyclegan", 0, 0.5)
    out = invoke("report", "--experiment", name, "--table", "4", "--tracking-uri", tracking_uri, "--no-log",
                 "--out", tmp_path / "out")
    assert out.exit_code == 0, out.output + out.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == sorted(f"exp%2Fünï 名{ending}" for ending in (".md", ".tex", ".csv", ".html", ".claims.csv"))
    assert unquote(Path(files[0]).stem.removesuffix(".claims")) == name
    assert f"Wrote {tmp_path / 'out' / 'exp%2Fünï 名.md'}" in out.output
    markdown = (tmp_path / "out" / "exp%2Fünï 名.md").read_text()
    assert "<img" not in markdown and "&lt;img src=x onerror=alert(1)>" in markdown
    assert "# cgbench report: exp/ünï 名" in markdown
