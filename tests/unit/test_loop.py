"""What the training loop scores on and how scores are logged: a held-out split when the
dataset has one (read once), else the first training rows kept as exact uint8; and the
``eval_split`` label in the history, the console and metrics.json. An epoch whose first batch
never comes fails the run."""

import dataclasses
import json
import threading
import time

import pytest
import torch

from genart import config, images, registry
from genart.data import synthetic
from genart.data.transforms import to_float
from genart.train import outputs
from genart.train.evaluation import Evaluation
from genart.train.loop import DataTimeoutError, epoch_batches, first_within
from genart.train.state import TrainState, Worker

TINY = {"pix2pix": ["pix2pix.ngf=4", "pix2pix.ndf=4"],
        "cyclegan": ["cyclegan.ngf=4", "cyclegan.ndf=4", "cyclegan.n_blocks=1"]}  # fmt: skip
LAYOUT = {"pix2pix": "pairs", "cyclegan": "unpaired"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {kind: synthetic.generate(kind, root / kind, n=8, size=32) for kind in LAYOUT.values()}


def setup(model, uri, *overrides, held_out=None):
    """(spec, nets, Evaluation on rank 0) for a tiny ``model`` reading ``uri``."""
    cfg = config.load(model, overrides=[
        f"data.uri={uri}", "data.size=32", "train.eval_samples=4", "run.name=t", *TINY[model],
        *overrides,
    ])  # fmt: skip
    spec = registry.trained(model)
    if held_out is not None:
        spec = dataclasses.replace(spec, held_out=held_out)
    state = TrainState.create(spec, cfg, Worker())
    return spec, state.nets, Evaluation(spec, cfg, torch.device("cpu"), enabled=True)


def training_batch(rows=3):
    """Rows as the training stream gives them: float images decoded from 8-bit pixels."""
    pixels = torch.randint(0, 256, (rows, 32, 32, 3), dtype=torch.uint8).numpy()
    return {key: torch.from_numpy(to_float(pixels)) for key in "AB"}


@pytest.mark.parametrize(("model", "split"), [("pix2pix", "val"), ("cyclegan", "test")])
def test_scores_are_computed_on_the_held_out_split(data, model, split):
    spec, nets, evaluation = setup(model, data[LAYOUT[model]])
    evaluation.add(training_batch())
    scores = evaluation.scores(nets)
    assert scores["eval_split"] == split and scores["eval_psnr"] > 0
    reference, name = evaluation.reference()
    expected, _ = spec.held_out(evaluation.cfg, 4)
    assert name == split and reference.keys() == expected.keys()
    assert all(torch.equal(reference[k], expected[k]) for k in expected)
    assert not evaluation.rows  # the training rows are dropped once the held-out set is read


def test_without_a_held_out_split_the_first_training_rows_are_kept_as_uint8(data):
    _, nets, evaluation = setup("pix2pix", data["pairs"] / "train")  # no val/ nor test/ in it
    first, second = training_batch(), training_batch()
    evaluation.add(first)
    evaluation.add(second)
    assert evaluation.scores(nets)["eval_split"] == "train"
    reference, _ = evaluation.reference()
    for key in "AB":
        assert reference[key].dtype == torch.uint8 and len(reference[key]) == 4
        kept = torch.cat([first[key], second[key][:1]])
        assert torch.equal(images.as_float(reference[key]), kept)  # exact: 8-bit pixels


def test_the_held_out_split_is_read_once(data):
    reads = []

    def held_out(cfg, n):
        reads.append(n)
        return registry.trained("pix2pix").held_out(cfg, n)

    _, nets, evaluation = setup("pix2pix", data["pairs"], held_out=held_out)
    evaluation.add(training_batch())
    first, again = evaluation.scores(nets), evaluation.scores(nets)
    assert reads == [4] and first == again
    evaluation.add(training_batch())
    assert not evaluation.rows


def test_other_ranks_score_nothing_and_read_nothing(data):
    spec, nets, rank0 = setup("pix2pix", data["pairs"], held_out=lambda cfg, n: pytest.fail())
    evaluation = Evaluation(spec, rank0.cfg, torch.device("cpu"), enabled=False)
    evaluation.add(training_batch())
    assert evaluation.scores(nets) == {} and not evaluation.rows


def test_the_split_is_logged_beside_the_scores_but_not_plotted(tmp_path, capsys):
    cfg = config.load("pix2pix", overrides=[f"run.storage_path={tmp_path}", "run.name=r"])
    out = outputs.RunOutputs(cfg, True, [])
    report = {"loss_l1": 0.25, "images_per_s": 10.0, "eval_psnr": 21.123456789,
              "eval_split": "val"}  # fmt: skip
    out.record(4, report)
    assert "eval_psnr 21.12 on val" in capsys.readouterr().out
    logged = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").open()]
    assert logged == [{"step": 4, **report, "eval_psnr": 21.123457}] == out.history
    out.finish(report)
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["eval_split"] == "val"


# --- a data pipeline that never delivers fails the run instead of hanging ----------------------


class Stalled:
    """A shard whose pipeline never delivers (its decode tasks got no CPU) until released."""

    def __init__(self):
        self.released = threading.Event()

    def iter_torch_batches(self, **options):
        self.released.wait()
        yield {"image": torch.zeros(1)}


def test_an_epoch_whose_first_batch_never_comes_fails_within_the_timeout():
    shard = Stalled()
    cfg = config.load("dcgan", overrides=["data.first_batch_timeout_s=0.2"])
    started = time.perf_counter()
    try:
        with pytest.raises(DataTimeoutError, match=r"within 0.2 s .* data.first_batch_timeout_s"):
            next(iter(epoch_batches(shard, cfg, epoch=0, rank=0, skip=0)))
    finally:
        shard.released.set()
    assert time.perf_counter() - started < 5


def test_first_within_passes_batches_errors_and_the_end_through():
    assert list(first_within(iter(range(4)), 5)) == [0, 1, 2, 3]
    assert list(first_within(iter(()), 5)) == []
    assert list(first_within(iter(range(2)), 0)) == [0, 1]  # 0: no limit, no thread

    def broken():
        raise OSError("bucket gone")
        yield

    with pytest.raises(OSError, match="bucket gone"):
        next(first_within(broken(), 5))
