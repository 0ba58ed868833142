"""``genart serve`` without Ray: the demo it prepares and what it tells the user to run."""

from pathlib import Path

from genart.cli import main
from genart.cli.serve import DEFAULT_DEMO_DIR, absolute_paths, default_config, load_config

SERVE_CONFIG = Path(__file__).resolve().parents[2] / "serve_config.yaml"


def test_prepare_names_the_one_documented_command_whose_default_is_serve_config_yaml(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--prepare"]) == 0
    # The README's command: `genart serve` serves what --prepare made.
    assert (
        capsys.readouterr().out.rstrip().endswith(f"ready in {DEFAULT_DEMO_DIR}; now: genart serve")
    )

    default = default_config(DEFAULT_DEMO_DIR)
    (app,) = default["applications"]
    # Jobs on disk under the demo folder: a restarted job store still knows them.
    assert app["args"]["gatys"]["jobs_dir"] == str(tmp_path / DEFAULT_DEMO_DIR / "jobs")

    # serve_config.yaml spells out the same application (deployment options aside).
    written = load_config(str(SERVE_CONFIG))
    assert default["http_options"].items() <= written.http_options.model_dump().items()
    args = absolute_paths(written.applications[0].args)  # relative to here, as in default
    for family in ("gatys", "dream"):  # the file: random weights; the default: any cached
        args[family]["vgg_weights"] = app["args"][family]["vgg_weights"]
    assert args == absolute_paths(app["args"])
