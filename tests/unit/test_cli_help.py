"""``genart VERB --help`` lists the model families from the registry, so it cannot go stale."""

import pytest

from genart import registry
from genart.cli import main


def help_text(verb: str, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main([verb, "--help"])
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere


def test_train_help_lists_every_trained_family(capsys):
    text = help_text("train", capsys)
    trained = registry.names(registry.TrainedSpec)
    assert f"a trained family: {', '.join(trained)}" in text
    assert "adain" in trained and "gatys" not in text  # gatys trains nothing


def test_tune_help_lists_every_family(capsys):
    assert f"a registered family: {', '.join(registry.names())}" in help_text("tune", capsys)
