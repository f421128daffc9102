import pytest

from cgbench.config import PRESETS, Config, parse_set, resolve, valid_keys
from cgbench.errors import ConfigError


def test_defaults_are_the_papers_cityscapes_setting():
    c = Config()
    assert (c.image_size, c.load_size, c.ngf, c.ndf, c.n_blocks, c.batch_size) == (128, 143, 64, 64, 6, 1)
    assert (c.lr, c.beta1, c.beta2, c.lambda_cycle, c.pool_size, c.gan_mode) == (2e-4, 0.5, 0.999, 10.0, 50, "lsgan")
    assert c.ablation == "cyclegan" and c.epochs == 200 and c.iters == 0 and c.prep == "authors"
    assert resolve("paper") == Config()
    assert resolve("cpu").prep == resolve("tiny").prep == "clean"


def test_preset_changes_only_what_it_names():
    tiny = resolve("tiny")
    for key in valid_keys():
        if key not in PRESETS["tiny"] and key != "epochs":
            assert getattr(tiny, key) == getattr(Config(), key), key
    assert tiny.iters == PRESETS["tiny"]["iters"] and tiny.epochs == 0


def test_set_values_are_typed_and_layered(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("lr: 0.001\nflip: false\nngf: 8\n")
    c = resolve("cpu", yml, parse_set(["ngf=12", "lambda_cycle=5"]), seed=3)
    assert c.lr == 0.001 and c.flip is False and c.ngf == 12 and c.lambda_cycle == 5.0 and c.seed == 3
    assert c.image_size == PRESETS["cpu"]["image_size"]


def test_iters_and_epochs_replace_each_other():
    assert resolve("cpu", epochs=3).iters == 0
    assert resolve("paper", iters=10).epochs == 0
    with pytest.raises(ConfigError, match="exactly one of iters or epochs"):
        resolve(None, sets={"iters": 10, "epochs": 2})


@pytest.mark.parametrize("source", ["set", "yaml"])
def test_unknown_key_lists_the_valid_ones(tmp_path, source):
    if source == "set":
        with pytest.raises(ConfigError) as err:
            resolve("tiny", sets=parse_set(["lamda_cycle=3"]))
    else:
        yml = tmp_path / "c.yaml"
        yml.write_text("lamda_cycle: 3\n")
        with pytest.raises(ConfigError) as err:
            resolve("tiny", yml)
    message = str(err.value)
    assert "unknown config key 'lamda_cycle'" in message and "did you mean 'lambda_cycle'" in message
    assert all(k in message for k in valid_keys())


@pytest.mark.parametrize(
    "sets, match",
    [
        ({"lr": "fast"}, "takes a number"),
        ({"ngf": "1.5"}, "takes an integer"),
        ({"flip": "maybe"}, "true or false"),
        ({"image_size": "30"}, "multiple of 4"),
        ({"image_size": "64", "load_size": "60"}, "load_size"),
        ({"gan_mode": "wgan"}, "gan_mode"),
        ({"prep": "paper"}, "prep .paper. is not one of: clean, authors"),
    ],
)
def test_bad_values_name_the_fix(sets, match):
    with pytest.raises(ConfigError, match=match):
        resolve("tiny", sets=sets)


def test_bad_set_syntax_and_files(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["lr"])
    with pytest.raises(ConfigError, match="does not exist"):
        resolve("tiny", tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve("tiny", bad)
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve("huge")
