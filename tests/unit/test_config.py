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


@pytest.mark.parametrize(
    ("override", "field", "expected"),
    [
        ("run.name=0123", ("run", "name"), "0123"),  # YAML: the octal 83
        ("run.name=2024-01-15", ("run", "name"), "2024-01-15"),  # YAML: a date
        ("run.name=12.30", ("run", "name"), "12.30"),  # YAML: the float 12.3
        ("data.uri=/data/set #2", ("data", "uri"), "/data/set #2"),  # YAML: a comment
        ("train.steps=0123", ("train", "steps"), 123),
        ("dcgan.lr_g=1e-4", ("dcgan", "lr_g"), 1e-4),
        ("data.flip=off", ("data", "flip"), False),
        ("data.channels=1", ("data", "channels"), 1),
    ],
)
def test_command_line_values_are_read_as_typed(override, field, expected):
    section, key = field
    cfg = config.load("dcgan", overrides=[override])
    value = getattr(cfg.params if section == "dcgan" else getattr(cfg, section), key)
    assert value == expected and type(value) is type(expected)


def test_a_boolean_is_not_a_numeric_choice():
    with pytest.raises(config.ConfigError, match="data.channels"):
        config.Config.from_dict({"model": "dcgan", "data": {"channels": True}})


@pytest.mark.parametrize("value", [0, False, [], ""])
def test_a_section_that_is_not_a_mapping_is_an_error(value):
    with pytest.raises(config.ConfigError, match="'train' must be a mapping"):
        config.Config.from_dict({"model": "dcgan", "train": value})


def test_an_empty_recipe_section_takes_defaults_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: dcgan\ntrain:\n  # steps: 10\n")
    assert config.load("dcgan", recipe).train.steps == config.TrainConfig().steps
    assert config.load("dcgan", recipe, ["train.steps=10"]).train.steps == 10


@pytest.mark.parametrize(
    "override",
    [
        "train.checkpoint_every=0",
        "train.log_every=0",
        "train.keep_checkpoints=0",
        "data.batch_size=0",
        "scaling.workers=0",
        "train.eval_every=-1",
    ],  # fmt: skip
)
def test_out_of_range_values_name_the_key(override):
    key = override.partition("=")[0]
    with pytest.raises(config.ConfigError, match=rf"'{key}' must be >="):
        config.load("dcgan", overrides=[override])


@pytest.mark.parametrize("name", ["my run", "a/b", "../up", "-x", "x?y"])
def test_run_names_are_folder_and_uri_safe(name):
    with pytest.raises(config.ConfigError, match="run.name"):
        config.load("dcgan", overrides=[f"run.name={name}"])


def saved_run():
    return config.load("dcgan", overrides=["dcgan.loss=wgan-gp", "dcgan.lr_g=1e-4",
                                           "train.steps=100", "run.name=r"])  # fmt: skip


def test_resumed_keeps_the_saved_config_and_takes_what_a_resume_may_change():
    changes = ["train.steps=200", "scaling.workers=4", "data.uri=s3://b/moved"]
    raw = config.given("dcgan", overrides=["run.name=r", "run.resume=true", *changes])
    cfg = config.resumed(saved_run(), raw)
    assert (cfg.params.loss, cfg.params.lr_g) == ("wgan-gp", 1e-4)  # not the defaults
    assert (cfg.train.steps, cfg.scaling.workers, cfg.data.uri) == (200, 4, "s3://b/moved")
    assert cfg.run.resume


def test_resumed_refuses_to_change_the_experiment():
    raw = config.given("dcgan", overrides=["run.name=r", "dcgan.loss=bce", "train.seed=3"])
    with pytest.raises(
        config.ConfigError, match="seed: saved 0, now 3; dcgan.loss: saved 'wgan-gp', now 'bce'"
    ):
        config.resumed(saved_run(), raw)
    with pytest.raises(config.ConfigError, match="trained as 'dcgan'"):
        config.resumed(saved_run(), {"model": "pix2pix"})
    # A whole config that differs only where a resume may differ is accepted as it is.
    longer = config.load("dcgan", overrides=["dcgan.loss=wgan-gp", "dcgan.lr_g=1e-4",
                                             "train.steps=300", "run.name=r"])  # fmt: skip
    assert config.resume_conflicts(saved_run(), longer) == []
