import pytest
import torch

from genart import cli, config
from genart.models import dcgan
from genart.train import checkpoint


def tiny_cfg():
    return config.load(
        "dcgan",
        overrides=[
            "data.size=16",
            "data.channels=1",
            "dcgan.g_width=4",
            "dcgan.d_width=4",
            "dcgan.latent_dim=8",
            "run.name=t",
        ],
    )


def state_for(cfg, step):
    nets = dcgan.build(cfg.params, cfg.data)
    return {"step": step, "nets": {k: v.state_dict() for k, v in nets.items()}}


def write_run(tmp_path, steps):
    cfg = tiny_cfg()
    for step in steps:
        checkpoint.write(
            tmp_path / f"checkpoint_{step:03d}", state_for(cfg, step), cfg, [{"step": step}]
        )
    return cfg


def test_round_trip(tmp_path):
    cfg = write_run(tmp_path, [3])
    state, loaded_cfg, history = checkpoint.load(tmp_path / "checkpoint_003")
    assert state["step"] == 3 and loaded_cfg == cfg and history == [{"step": 3}]


@pytest.mark.parametrize("damage", ["truncate", "no_manifest", "missing_file"])
def test_incomplete_checkpoints_are_detected(tmp_path, damage):
    write_run(tmp_path, [1])
    folder = tmp_path / "checkpoint_001"
    if damage == "truncate":
        data = (folder / "state.pt").read_bytes()
        (folder / "state.pt").write_bytes(data[: len(data) // 2])
    elif damage == "no_manifest":
        (folder / "manifest.json").unlink()
    else:
        (folder / "config.yaml").unlink()
    with pytest.raises(checkpoint.IncompleteCheckpoint):
        checkpoint.load(folder)


def test_latest_complete_skips_a_partial_newest(tmp_path):
    write_run(tmp_path, [5, 10, 15])
    (tmp_path / "checkpoint_015" / "manifest.json").unlink()  # crash while writing step 15
    best = checkpoint.latest_complete(str(tmp_path))
    assert best.name == "checkpoint_010"
    assert checkpoint.resolve(str(tmp_path)).name == "checkpoint_010"


def test_resolve_with_nothing_complete_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        checkpoint.resolve(str(tmp_path))


def test_export_and_load_exported(tmp_path):
    cfg = write_run(tmp_path / "run", [2])
    checkpoint.export(str(tmp_path / "run"), str(tmp_path / "exported"))
    assert sorted(p.name for p in (tmp_path / "exported").iterdir()) == [
        "G.pt",
        "config.yaml",
        "meta.json",
    ]
    nets, loaded = checkpoint.load_exported(str(tmp_path / "exported"))
    assert loaded == cfg and list(nets) == ["G"] and not nets["G"].training
    state, _, _ = checkpoint.load(tmp_path / "run" / "checkpoint_002")
    loaded_weights = nets["G"].state_dict()
    assert loaded_weights.keys() == state["nets"]["G"].keys()
    for key, value in state["nets"]["G"].items():
        assert torch.equal(loaded_weights[key], value)


def test_sample_interpolate_arithmetic_cli(tmp_path):
    write_run(tmp_path / "run", [2])
    run = str(tmp_path / "run")
    assert cli.main(["sample", run, "--n", "6", "--out", str(tmp_path / "s.png")]) == 0
    assert (
        cli.main(
            [
                "interpolate",
                run,
                "--seeds",
                "1",
                "2",
                "3",
                "--steps",
                "4",
                "--out",
                str(tmp_path / "i.png"),
            ]
        )
        == 0
    )
    assert (
        cli.main(
            [
                "arithmetic",
                run,
                "--a",
                "1,2",
                "--b",
                "3",
                "--c",
                "4,5",
                "--out",
                str(tmp_path / "a.png"),
            ]
        )
        == 0
    )
    from PIL import Image

    # 4 images of 16 px per row with 2 px padding: 2 + 4 * 18 = 74 wide; 2 rows of interpolation
    assert Image.open(tmp_path / "i.png").size == (74, 2 + 2 * 18)
    assert Image.open(tmp_path / "a.png").size == (74, 2 + 4 * 18)
