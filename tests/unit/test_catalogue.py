"""Catalogues (genart.catalogue, ``genart export --catalogue``, ``genart models``): a folder or
s3:// prefix of named exports; a broken or foreign entry is listed as unusable, never breaking
the others. No Ray."""

import argparse
import json

import pytest
from test_checkpoint import write_run

from genart import storage
from genart.catalogue import Catalogue, ModelNotFound
from genart.cli import main
from genart.cli import tune as tune_cli
from genart.errors import InputError
from genart.export import InvalidExport
from genart.tune.settings import Report

EVALUATED = [{"step": 3, "eval_swd": 9.5, "eval_live_swd": 9.7, "eval_split": "held-out"}]


def run_at(tmp_path, step: int) -> str:
    """A tiny DCGAN run folder whose one checkpoint is at ``step`` with a held-out score."""
    from genart.train import checkpoint

    folder = tmp_path / f"run{step}"
    cfg = write_run(folder, [step])
    ckpt = folder / f"checkpoint_{step:03d}"
    checkpoint.write(ckpt, checkpoint.load(ckpt)[0], cfg, EVALUATED)
    return str(folder)


def test_export_list_show_replace_remove(tmp_path, capsys):
    cat = str(tmp_path / "cat")
    assert main(["export", run_at(tmp_path, 3), "--catalogue", cat, "--name", "digits"]) == 0
    assert "to " + cat + " as digits" in capsys.readouterr().out

    assert main(["models", "list", cat]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split() == ["name", "family", "size", "created", "scores"]
    assert line.startswith("digits") and " dcgan " in line and " MB " in line
    assert line.endswith(" swd 9.5 (held-out, step 3)")  # the family's score; show has all

    assert main(["models", "show", cat, "digits"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["family"] == "dcgan" and shown["source"]["step"] == 3
    assert shown["scores"] == {"step": 3, "swd": 9.5, "live_swd": 9.7, "split": "held-out"}
    assert shown["source"]["run"] == str(tmp_path / "run3")

    newer = run_at(tmp_path, 7)
    assert main(["export", newer, "--catalogue", cat, "--name", "digits"]) == 2
    assert "a model named 'digits' exists" in capsys.readouterr().err
    assert main(["export", newer, "--catalogue", cat, "--name", "digits", "--replace"]) == 0
    assert Catalogue(cat).entry("digits").manifest["source"]["step"] == 7

    assert main(["models", "remove", cat, "digits"]) == 0
    assert Catalogue(cat).names() == []
    assert main(["models", "show", cat, "digits"]) == 2
    assert "no model named 'digits'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["Mosaic", "a/b", "../up", "_x", "with space", "x" * 65])
def test_names_must_be_url_safe(tmp_path, name, capsys):
    argv = ["export", run_at(tmp_path, 3), "--catalogue", str(tmp_path / "cat"), "--name", name]
    assert main(argv) == 2
    assert "is not URL-safe" in capsys.readouterr().err
    assert not (tmp_path / "cat").exists() or Catalogue(str(tmp_path / "cat")).names() == []


def test_export_needs_a_name_in_a_catalogue_and_one_place(tmp_path, capsys):
    run = run_at(tmp_path, 3)
    assert main(["export", run, "--catalogue", str(tmp_path / "cat")]) == 2
    assert "--catalogue needs --name" in capsys.readouterr().err
    assert main(["export", run, "--out", str(tmp_path / "x"), "--name", "x"]) == 2
    assert "--name and --replace go with --catalogue" in capsys.readouterr().err


def damage(cat, tmp_path) -> None:
    """Beside the usable model ``good``: every kind of entry that is no usable export."""
    (cat / "foreign").mkdir()
    (cat / "foreign" / "notes.txt").write_text("not a model")
    (cat / "Bad Name").mkdir()
    Catalogue(str(cat)).publish(run_at(tmp_path, 4), "garbled")
    (cat / "garbled" / "export.json").write_text("{")
    Catalogue(str(cat)).publish(run_at(tmp_path, 5), "alien")
    manifest = json.loads((cat / "alien" / "export.json").read_text())
    (cat / "alien" / "export.json").write_text(json.dumps(manifest | {"family": "vae"}))
    (cat / "README.txt").write_text("files beside the models are not models")


def test_broken_and_foreign_entries_are_listed_as_unusable_with_their_reason(tmp_path, capsys):
    cat = tmp_path / "cat"
    Catalogue(str(cat)).publish(run_at(tmp_path, 3), "good")
    damage(cat, tmp_path)
    entries = {e.name: e for e in Catalogue(str(cat)).entries()}
    assert sorted(entries) == ["Bad Name", "alien", "foreign", "garbled", "good"]
    assert [name for name, e in entries.items() if e.usable] == ["good"]
    assert entries["foreign"].problem == "not an export (it has no export.json)"
    assert entries["Bad Name"].problem == "its name is not URL-safe"
    assert "export.json is not a valid export manifest" in entries["garbled"].problem
    assert entries["alien"].problem == "unknown family 'vae'"

    assert main(["models", "list", str(cat)]) == 0
    table = capsys.readouterr().out
    assert "unusable: unknown family 'vae'" in table and "swd 9.5" in table
    assert main(["models", "list", str(cat), "--json"]) == 0
    listed = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert listed["good"]["usable"] and listed["good"]["family"] == "dcgan"
    assert listed["alien"] == {"name": "alien", "usable": False, "problem": "unknown family 'vae'"}
    assert str(tmp_path) not in json.dumps(listed)  # names, families, scores: no paths
    assert main(["models", "show", str(cat), "garbled"]) == 2
    assert "model 'garbled' cannot be used" in capsys.readouterr().err
    with pytest.raises(ModelNotFound):
        Catalogue(str(cat)).entry("Bad Name")  # a name no request can carry
    assert Catalogue(str(cat)).load("good").cfg.model == "dcgan"


def test_damaged_weights_are_caught_when_loaded(tmp_path):
    cat = Catalogue(str(tmp_path / "cat"))
    cat.publish(run_at(tmp_path, 3), "good")
    (tmp_path / "cat" / "good" / "G.pt").write_bytes(b"cut")
    assert cat.entry("good").usable  # listing reads manifests only, never the weights
    with pytest.raises(InvalidExport, match="G.pt is missing or not the size"):
        cat.load("good")


def test_a_catalogue_in_object_storage(tmp_path):
    from localcloud import environment, moto_s3

    run3, run7 = run_at(tmp_path, 3), run_at(tmp_path, 7)
    with moto_s3("models") as env, environment(env):
        cat = Catalogue("s3://models/studio")
        assert cat.entries() == []  # an empty prefix is an empty catalogue
        cat.publish(run3, "digits")
        cat.publish(run3, "other")
        storage.write_bytes("s3://models/studio/foreign/notes.txt", b"not a model")
        with pytest.raises(InputError, match="exists"):
            cat.publish(run7, "digits")
        cat.publish(run7, "digits", replace=True)
        found = {e.name: e for e in cat.entries()}
        assert found["digits"].manifest["source"]["step"] == 7
        assert found["foreign"].problem == "not an export (it has no export.json)"
        assert cat.load("digits").manifest["source"]["step"] == 7
        cat.remove("other")
        assert cat.names() == ["digits", "foreign"]
        assert storage.list_files("s3://models/studio/other") == []


def tune_args(tmp_path, **given) -> argparse.Namespace:
    values = {"catalogue": str(tmp_path / "cat"), "publish_as": None, "name": None,
              "replace": False} | given  # fmt: skip
    return argparse.Namespace(**values)


def test_tune_publishes_its_best_trial(tmp_path, capsys):
    """What ``genart tune ... --catalogue CAT`` does once the sweep has reported."""
    report = Report(None, {"trial": "t_0001"}, {}, 1.0, 0, "sweep-1", run_at(tmp_path, 3))
    tune_cli.publish_best(report, tune_args(tmp_path))
    assert "published trial t_0001" in capsys.readouterr().out
    assert Catalogue(str(tmp_path / "cat")).entry("sweep-1").family == "dcgan"
    tune_cli.publish_best(report, tune_args(tmp_path, publish_as="best"))
    assert Catalogue(str(tmp_path / "cat")).names() == ["best", "sweep-1"]


def test_tune_refuses_a_publication_before_the_sweep(tmp_path):
    from genart import registry

    with pytest.raises(InputError, match="gatys trains nothing to publish"):
        tune_cli.check_publishable(tune_args(tmp_path), registry.get("gatys"))
    Catalogue(str(tmp_path / "cat")).publish(run_at(tmp_path, 3), "taken")
    with pytest.raises(InputError, match="exists"):
        tune_cli.check_publishable(tune_args(tmp_path, name="taken"), registry.get("dcgan"))
    with pytest.raises(InputError, match="URL-safe"):
        tune_cli.check_publishable(tune_args(tmp_path, publish_as="No!"), registry.get("dcgan"))
    tune_cli.check_publishable(
        tune_args(tmp_path, name="taken", replace=True), registry.get("dcgan")
    )


def test_a_model_is_found_by_name_without_listing_the_catalogue(tmp_path, monkeypatch):
    """How a server will look names up: one manifest read, and a model added since is there."""
    cat = Catalogue(str(tmp_path / "cat"))
    cat.publish(run_at(tmp_path, 3), "first")
    second = run_at(tmp_path, 7)

    def refuse(uri):
        pytest.fail(f"listed {uri}")

    with monkeypatch.context() as patched:
        patched.setattr(storage, "list_dirs", refuse)
        with pytest.raises(ModelNotFound):
            cat.entry("second")
        assert cat.load("first").manifest["source"]["step"] == 3
    Catalogue(str(tmp_path / "cat")).publish(second, "second")  # as another process would
    monkeypatch.setattr(storage, "list_dirs", refuse)
    assert cat.entry("second").manifest["source"]["step"] == 7
