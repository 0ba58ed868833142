import pytest

from genart import config
from genart.config import Config, ConfigError


def test_defaults_and_overrides_are_typed():
    cfg = config.load("dcgan", overrides=["dcgan.lr_g=1e-4", "train.steps=7", "data.flip=false"])
    assert cfg.params.lr_g == 1e-4 and isinstance(cfg.params.lr_g, float)
    assert cfg.train.steps == 7 and cfg.data.flip is False
    assert cfg.params.loss == "bce"


def test_unknown_key_names_the_key_and_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'train.stepz'.*steps"):
        config.load("dcgan", overrides=["train.stepz=3"])


def test_unknown_section_and_model_are_errors():
    with pytest.raises(ConfigError, match="unknown config section 'trian'"):
        config.load("dcgan", overrides=["trian.steps=3"])
    with pytest.raises(ConfigError, match="registered models: .*dcgan"):
        config.load("no-such-model")


def test_wrong_type_and_invalid_choice():
    with pytest.raises(ConfigError, match="'train.steps' must be int"):
        config.load("dcgan", overrides=["train.steps=many"])
    with pytest.raises(ConfigError, match=r"'dcgan.loss' = 'wgan-xx' is not one of .*wgan-gp"):
        config.load("dcgan", overrides=["dcgan.loss=wgan-xx"])
    with pytest.raises(ConfigError, match="data.channels"):
        config.load("dcgan", overrides=["data.channels=2"])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="section.key=value"):
        config.load("dcgan", overrides=["steps"])


def test_recipe_round_trip(tmp_path):
    cfg = config.load("dcgan", overrides=["dcgan.loss=wgan", "run.name=x"])
    config.save(cfg, tmp_path / "r.yaml")
    again = config.load(recipe=tmp_path / "r.yaml")
    assert again == cfg and isinstance(again, Config)


def test_recipe_for_another_model_is_refused(tmp_path):
    (tmp_path / "r.yaml").write_text("model: dcgan\n")
    with pytest.raises(ConfigError, match="is for model 'dcgan'"):
        config.load("pix2pix", tmp_path / "r.yaml")
