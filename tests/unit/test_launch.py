"""What genart.train.launch hands Ray: the dataset each model's spec asks for, built from the
config (the pipelines themselves run under Ray and are tested in tests/ray)."""

import pytest

from genart import config
from genart.data import pipelines
from genart.train import launch


@pytest.mark.parametrize(("model", "builder"), [("dcgan", "images"), ("pix2pix", "paired")])
def test_dataset_reads_the_configured_parquet_column(model, builder, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(pipelines, builder, lambda *args, **kwargs: calls.append(kwargs))
    overrides = [f"data.uri={tmp_path}", "data.parquet_column=picture", "data.repeat=2"]
    launch.dataset(config.load(model, overrides=overrides))
    assert calls[0]["column"] == "picture" and calls[0]["repeat"] == 2
