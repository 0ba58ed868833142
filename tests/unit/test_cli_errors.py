"""What the user can fix ends ``genart`` with one line on stderr and exit code 2, before Ray."""

import pytest

from genart.cli import main


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Every command here must fail before a sweep starts Ray."""
    import genart.train.launch

    def refuse(*args, **kwargs):
        raise AssertionError("the command got as far as starting Ray")

    monkeypatch.setattr(genart.train.launch, "init_ray", refuse)


def error_of(argv: list[str], capsys) -> str:
    """The error line of a command that must exit 2 with exactly one line on stderr."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("genart: error: ") and err.count("\n") == 1, err
    return err


def test_malformed_search_space_names_the_file_and_line(tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text("dcgan.lr_g: {loguniform: [1e-5, 1e-3]\n")
    err = error_of(["tune", "dcgan", "--space", str(path)], capsys)
    assert f"invalid YAML in {path} at line 2, column 1: expected ',' or '}}'" in err
    assert "(while parsing a flow mapping at line 1, column 13)" in err


@pytest.mark.parametrize("verb", ["tune", "train"])
def test_malformed_recipe_names_the_file_and_line(tmp_path, capsys, verb):
    path = tmp_path / "recipe.yaml"
    path.write_text("model: dcgan\ntrain: {steps: 10\n")
    err = error_of([verb, "dcgan", "--config", str(path)], capsys)
    assert f"invalid YAML in {path} at line 3, column 1" in err


def test_unwritable_output_folder(tmp_path, capsys):
    taken = tmp_path / "a-file"
    taken.touch()
    err = error_of(["data", "synth", "shapes", "--out", str(taken), "--n", "2"], capsys)
    assert "Not a directory" in err and str(taken) in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--samples", "-1"], "samples (trials, or grid repetitions) must be >= 1, got -1"),
        (["--samples", "0"], "must be >= 1, got 0"),
        (["--max-concurrent", "-1"], "max_concurrent must be >= 0"),
        (["--budget", "20"], "pbt perturbs trials at their scores before train.steps (20)"),
        (["--budget", "20", "--set", "train.eval_every=50"], "exceeds the budget"),
    ],
)
def test_sweep_settings_are_checked_before_ray_starts(flags, message, capsys):
    argv = ["tune", "dcgan", "--data", "/data", "--scheduler", "pbt", *flags]
    assert message in error_of(argv, capsys)


def test_gatys_sweep_of_a_recipe_for_another_model(tmp_path, capsys):
    recipe = tmp_path / "dcgan.yaml"
    recipe.write_text("model: dcgan\ntrain: {steps: 50}\n")
    argv = ["tune", "gatys", "--config", str(recipe), "--data", "c.png", "--style", "s.png"]
    assert "is for model 'dcgan', not 'gatys'" in error_of(argv, capsys)
