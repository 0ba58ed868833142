import shutil
from pathlib import Path

import pytest

from genart import cli, config, storage
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


def test_a_checkpoint_pruned_while_being_scanned_is_skipped(tmp_path, monkeypatch):
    write_run(tmp_path, [3, 6])
    original = storage.sha256

    def prune_then_digest(path):
        if path.parent.name == "checkpoint_006":  # the writer's keep-last-K prunes it now
            shutil.rmtree(path.parent)
        return original(path)

    monkeypatch.setattr(storage, "sha256", prune_then_digest)
    assert checkpoint.latest_complete(str(tmp_path)).name == "checkpoint_003"


def test_latest_complete_reads_only_the_newest_complete_checkpoint(tmp_path, monkeypatch):
    write_run(tmp_path, [3, 6, 9])
    (tmp_path / "checkpoint_009" / checkpoint.STATE).write_bytes(b"cut")  # a partial upload
    copied = []
    real_copy = storage.local_copy
    monkeypatch.setattr(storage, "local_copy", lambda uri: copied.append(uri) or real_copy(uri))
    assert checkpoint.latest_complete(str(tmp_path)).name == "checkpoint_006"
    # From object storage each copy is a download: the older complete one is never fetched.
    assert [Path(uri).name for uri in copied] == ["checkpoint_009", "checkpoint_006"]


def test_file_uris_are_local_paths(tmp_path):
    write_run(tmp_path, [3])
    uri = f"file://{tmp_path}"
    assert storage.absolute(uri) == str(tmp_path.resolve())
    assert storage.list_dirs(uri) == ["checkpoint_003"] and storage.exists(uri)
    assert checkpoint.latest_complete(uri).name == "checkpoint_003"


def test_resume_continues_with_the_saved_config(tmp_path):
    from genart.train import launch

    saved = write_run(tmp_path / "t", [3])  # run "t", trained with tiny widths
    place = ["run.name=t", f"run.storage_path={tmp_path}", "run.resume=true"]
    cfg = launch.configure("dcgan", None, [*place, "train.steps=50"])
    assert (cfg.params.g_width, cfg.data.size, cfg.train.steps) == (4, 16, 50)
    assert launch.resolve_run(cfg).run.name == "t"
    assert saved.train.steps != 50
    # Handing fit() a config that changes the experiment is refused, naming the change.
    other = config.load("dcgan", overrides=[*place, "dcgan.g_width=8", "data.size=16",
                                            "data.channels=1", "dcgan.d_width=4",
                                            "dcgan.latent_dim=8"])  # fmt: skip
    with pytest.raises(config.ConfigError, match="dcgan.g_width: saved 4, now 8"):
        launch.resolve_run(other)


def test_newest_config_reads_only_the_manifest_and_config(tmp_path, monkeypatch):
    cfg = write_run(tmp_path, [3, 6])
    newest = tmp_path / "checkpoint_006"
    (newest / checkpoint.STATE).write_bytes(b"cut")  # its weights need not be complete
    monkeypatch.setattr(storage, "sha256", lambda path: pytest.fail(f"hashed {path}"))
    assert checkpoint.newest_config(str(tmp_path)) == cfg
    (newest / "config.yaml").write_text("model: dcgan\n")  # not what its manifest recorded
    assert checkpoint.newest_config(str(tmp_path)) == cfg  # from checkpoint_003
    assert checkpoint.newest_config(str(tmp_path / "missing")) is None
