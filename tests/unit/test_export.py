"""Exports (genart.export): written from a run, read back as the exported networks alone,
described without their weights, verified against their manifest; older exports still read."""

import json

import pytest
import torch
from test_checkpoint import write_run

import genart
from genart import config, registry, storage
from genart import export as exports
from genart.models import dcgan
from genart.train import checkpoint

EVALUATED = [{"step": 1, "loss_g": 0.5}, {"step": 2, "eval_swd": 9.5, "eval_split": "held-out"}]


def exported_run(tmp_path, history=EVALUATED):
    """A tiny DCGAN run (one checkpoint at step 2, with ``history``) exported to tmp/export."""
    cfg = write_run(tmp_path / "run", [2])
    ckpt = tmp_path / "run" / "checkpoint_002"
    state, _, _ = checkpoint.load(ckpt)
    checkpoint.write(ckpt, state, cfg, history)
    manifest = exports.from_checkpoint(str(tmp_path / "run"), str(tmp_path / "export"))
    return cfg, state, manifest


def test_an_export_holds_the_served_networks_config_and_a_manifest(tmp_path):
    cfg, state, manifest = exported_run(tmp_path)
    folder = tmp_path / "export"
    assert sorted(p.name for p in folder.iterdir()) == ["G.pt", "config.yaml", "export.json"]
    assert exports.describe(str(folder)) == manifest
    assert manifest["family"] == "dcgan" and manifest["nets"] == ["G"]
    assert manifest["source"] == {
        "run": str(tmp_path / "run"),
        "checkpoint": str(tmp_path / "run" / "checkpoint_002"),
        "step": 2,
    }
    assert manifest["scores"] == {"step": 2, "swd": 9.5, "split": "held-out"}
    assert manifest["data"] == cfg.data.uri and manifest["genart_version"] == genart.__version__
    assert manifest["weights"] == "live (no average)"
    for name in ("G.pt", "config.yaml"):
        entry = manifest["files"][name]
        assert entry == {"bytes": (folder / name).stat().st_size,
                         "sha256": storage.sha256(folder / name)}  # fmt: skip

    loaded = exports.load(str(folder))
    assert loaded.cfg == cfg and loaded.manifest == manifest
    assert list(loaded.nets) == ["G"] and not loaded.nets["G"].training
    weights = loaded.nets["G"].state_dict()
    assert weights.keys() == state["nets"]["G"].keys()
    assert all(torch.equal(weights[key], value) for key, value in state["nets"]["G"].items())


def test_a_run_without_evaluations_exports_no_scores(tmp_path):
    assert exported_run(tmp_path, history=[{"step": 2, "loss_g": 1.0}])[2]["scores"] == {}


def test_loading_builds_no_discriminator(tmp_path, monkeypatch):
    exported_run(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("a discriminator was built to load an export")

    monkeypatch.setattr(dcgan, "Discriminator", refuse)
    for source in ("export", "run"):  # an export, and a run folder read directly
        assert list(exports.load(str(tmp_path / source)).nets) == ["G"]


@pytest.mark.parametrize("family", registry.names(registry.TrainedSpec))
def test_every_family_builds_exactly_its_exported_networks(family):
    spec = registry.trained(family)
    cfg = config.load(family, overrides=["data.channels=3", "adain.vgg_weights=random"]
                      if family == "adain" else ["data.channels=3"])  # fmt: skip
    assert set(spec.exported_nets(cfg.params, cfg.data)) == set(spec.export)
    if spec.build_exported is None:  # then build must make nothing an export leaves out
        assert set(spec.build(cfg.params, cfg.data)) == set(spec.export)


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("weights", "G.pt does not match its manifest's SHA-256"),
        ("truncate", "G.pt is missing or not the size"),
        ("config", "config.yaml is missing"),
        ("manifest", "export.json is not a valid export manifest"),
        ("newer", "export format 99 is newer than this genart reads"),
        ("escape", "export.json names files outside the export"),
        ("nets", r"holds the networks \['G', 'D'\]; a dcgan export holds \['G'\]"),
    ],
)
def test_a_damaged_export_is_refused_with_its_reason(tmp_path, damage, reason):
    exported_run(tmp_path)
    folder = tmp_path / "export"
    weights = (folder / "G.pt").read_bytes()
    if damage == "weights":
        (folder / "G.pt").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    elif damage == "truncate":
        (folder / "G.pt").write_bytes(weights[:100])
    elif damage == "config":
        (folder / "config.yaml").unlink()
    elif damage == "manifest":
        (folder / "export.json").write_text("{not json")
    else:
        manifest = json.loads((folder / "export.json").read_text())
        changed = {"newer": {"format": 99}, "escape": {"nets": ["../../elsewhere/G"]},
                   "nets": {"nets": ["G", "D"]}}[damage]  # fmt: skip
        (folder / "export.json").write_text(json.dumps(manifest | changed))
    with pytest.raises(exports.InvalidExport, match=reason):
        exports.verify(str(folder))
    with pytest.raises(exports.InvalidExport, match=reason):
        exports.load(str(folder))


def test_a_folder_without_a_manifest_is_not_an_export(tmp_path):
    with pytest.raises(exports.InvalidExport, match="has no export.json"):
        exports.describe(str(tmp_path))
    assert not exports.is_export(str(tmp_path))


def test_an_export_written_before_the_manifest_still_loads(tmp_path):
    """What ``genart export`` wrote before export.json: G.pt, config.yaml and meta.json."""
    cfg = write_run(tmp_path / "run", [4])
    state, _, _ = checkpoint.load(tmp_path / "run" / "checkpoint_004")
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save(state["nets"]["G"], folder / "G.pt")
    config.save(cfg, folder / "config.yaml")
    meta = {"model": "dcgan", "nets": ["G"], "step": 4, "weights": "live (no average)",
            "checkpoint": str(tmp_path / "run"), "format": "state_dict+config"}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))

    manifest = exports.describe(str(folder))
    assert (manifest["family"], manifest["nets"], manifest["source"]["step"]) == ("dcgan", ["G"], 4)
    loaded = exports.load(str(folder))
    assert loaded.cfg == cfg and exports.verify(str(folder)) == manifest
    assert all(
        torch.equal(loaded.nets["G"].state_dict()[k], v) for k, v in state["nets"]["G"].items()
    )
    (folder / "G.pt").unlink()
    with pytest.raises(exports.InvalidExport, match="G.pt is missing"):
        exports.load(str(folder))


def test_export_to_object_storage_and_back(tmp_path):
    from localcloud import environment, moto_s3

    cfg, state, _ = exported_run(tmp_path)
    with moto_s3("models") as env, environment(env):
        manifest = exports.from_checkpoint(str(tmp_path / "run"), "s3://models/digits")
        assert storage.list_files("s3://models/digits") == ["G.pt", "config.yaml", "export.json"]
        assert exports.describe("s3://models/digits") == manifest
        loaded = exports.load("s3://models/digits")
    assert loaded.cfg == cfg
    assert all(
        torch.equal(loaded.nets["G"].state_dict()[k], v) for k, v in state["nets"]["G"].items()
    )


def test_copying_a_remote_export_downloads_it_once_and_leaves_no_download(tmp_path, monkeypatch):
    from localcloud import environment, moto_s3

    exported_run(tmp_path)
    downloads = []
    real_local_copy = storage.local_copy

    def counting(uri):
        folder = real_local_copy(uri)
        if storage.is_remote(uri):
            downloads.append(folder)
        return folder

    monkeypatch.setattr(storage, "local_copy", counting)
    with moto_s3("models") as env, environment(env):
        exports.from_checkpoint(str(tmp_path / "run"), "s3://models/digits")
        manifest = exports.copy("s3://models/digits", str(tmp_path / "copied"))
    assert len(downloads) == 1 and not downloads[0].exists()
    assert exports.verify(str(tmp_path / "copied")) == manifest


def test_genart_export_says_what_it_wrote(tmp_path, capsys):
    from genart.cli import main

    exported_run(tmp_path)
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "again")]) == 0
    assert "exported dcgan (step 2, live (no average) weights)" in capsys.readouterr().out
    assert exports.verify(str(tmp_path / "again"))["source"]["step"] == 2


def test_what_a_server_shows_of_an_export_names_no_path_and_no_config(tmp_path):
    _, _, manifest = exported_run(tmp_path)
    shown = exports.public(manifest)
    assert shown == {"family": "dcgan", "step": 2, "weights": "live (no average)",
                     "scores": {"step": 2, "swd": 9.5, "split": "held-out"},
                     "created": manifest["created"],
                     "genart_version": genart.__version__}  # fmt: skip
    assert str(tmp_path) not in json.dumps(shown)


def test_loading_initialises_nothing_it_then_overwrites(tmp_path):
    """The networks are built without data and given the saved tensors: the global RNG, which
    an initialisation draws from, is left as it was."""
    exported_run(tmp_path)
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    loaded = exports.load(str(tmp_path / "export"))
    assert torch.equal(torch.rand(4), expected)
    assert not any(p.is_meta for p in loaded.nets["G"].parameters())
