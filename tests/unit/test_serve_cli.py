"""``genart serve`` without Ray: the demo it prepares and what it tells the user to run."""

from genart.cli import main
from genart.cli.serve import DEFAULT_DEMO_DIR, default_config


def test_prepare_names_the_documented_command_and_the_default_keeps_jobs(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--prepare"]) == 0
    # The README's command: `genart serve` serves what --prepare made.
    assert (
        capsys.readouterr().out.rstrip().endswith(f"ready in {DEFAULT_DEMO_DIR}; now: genart serve")
    )

    (app,) = default_config(DEFAULT_DEMO_DIR)["applications"]
    # Jobs on disk under the demo folder: a restarted job store still knows them.
    assert app["args"]["gatys"]["jobs_dir"] == str(tmp_path / DEFAULT_DEMO_DIR / "jobs")
