"""The onnxruntime backend: exports carry checked graphs, pipelines choose a backend, and
onnxruntime's outputs stay within one grey level of torch's (batched by size, tiled, with the
style controls), in every family that has graphs. No Ray."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from exports import TINY_FAST_STYLE, make_export
from PIL import Image

from genart import onnx_export
from genart.cli import main
from genart.errors import ConfigError
from genart.export import InvalidExport
from genart.pipelines.adain import AdaINPipeline
from genart.pipelines.style import FastStylePipeline
from genart.pipelines.translate import TranslationPipeline

pytest.importorskip("onnxruntime")

CPU, GPU = torch.device("cpu"), torch.device("cuda")
TINY = {
    "fast_style": TINY_FAST_STYLE,
    # Without test-time dropout: the graphs are deterministic (see the test of it below).
    "pix2pix": ["data.size=32", "pix2pix.ngf=4", "pix2pix.ndf=4", "pix2pix.dropout_at_test=false"],
    "cyclegan": ["data.size=32", "cyclegan.ngf=4", "cyclegan.ndf=4", "cyclegan.n_blocks=1"],
    "adain": ["adain.vgg_weights=random", "adain.width=8"],
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """An export of each family with graphs, as ``genart export`` writes them."""
    root = tmp_path_factory.mktemp("exports")
    return {model: make_export(root, model, overrides) for model, overrides in TINY.items()}


def pictures(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth gradients plus noise: the tiny random networks then give varied outputs.
    return [rng.integers(0, 256, shape, np.uint8) for shape in shapes]


def grey_levels_apart(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b))


# --- choosing a backend ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "device", "graphs", "installed", "chosen"),
    [
        ("auto", CPU, True, True, "onnxruntime"),
        ("auto", GPU, True, True, "torch"),  # torch is the fast one on a GPU
        ("auto", CPU, False, True, "torch"),  # no checked graph
        ("auto", CPU, True, False, "torch"),  # onnxruntime missing
        ("torch", CPU, True, True, "torch"),
        ("onnxruntime", CPU, True, True, "onnxruntime"),
    ],
)
def test_backend_rules(wanted, device, graphs, installed, chosen):
    assert onnx_export.choose_backend(wanted, device, graphs, installed) == chosen


def test_pix2pix_with_test_time_dropout_stays_on_torch_unless_asked(tmp_path):
    assert onnx_export.choose_backend("auto", CPU, True, True, test_dropout=True) == "torch"
    assert onnx_export.choose_backend("onnxruntime", CPU, True, True, True) == "onnxruntime"
    noisy = make_export(tmp_path, "pix2pix", TINY["pix2pix"][:-1])  # the paper's default
    assert TranslationPipeline.from_export(noisy, "cpu").describe()["backend"] == "torch"
    asked = TranslationPipeline.from_export(noisy, "cpu", backend="onnxruntime")
    image = pictures((32, 32, 3))
    assert np.array_equal(asked(image)[0], asked(image)[0])  # deterministic: no dropout


@pytest.mark.parametrize(
    ("device", "graphs", "installed", "words"),
    [
        (CPU, False, True, "no checked ONNX graph"),
        (CPU, True, False, "onnxruntime is not installed"),
        (GPU, True, True, "runs on CPU here, not cuda"),
    ],
)
def test_onnxruntime_where_it_cannot_run_is_an_error_saying_why(device, graphs, installed, words):
    with pytest.raises(ConfigError, match=words):
        onnx_export.choose_backend("onnxruntime", device, graphs, installed)
    with pytest.raises(ConfigError, match="backend must be one of auto, torch, onnxruntime"):
        onnx_export.choose_backend("tensorrt", device, graphs, installed)


# --- exports and their graphs ----------------------------------------------------------------


@pytest.mark.parametrize("model", list(TINY))
def test_an_export_carries_checked_graphs_and_runs_them_on_cpu(exports, model):
    meta = json.loads((Path(exports[model]) / "export.json").read_text())
    nets = {"fast_style": ["G"], "pix2pix": ["G"], "cyclegan": ["G_AB", "G_BA"],
            "adain": ["decoder"]}[model]  # fmt: skip
    assert meta["onnx"] == {name: f"{name}.onnx" for name in nets}
    assert 0 <= meta["onnx_max_diff"] <= onnx_export.TOLERANCE
    assert all((Path(exports[model]) / f"{name}.onnx").is_file() for name in nets)


def test_dcgan_exports_carry_no_graph(tmp_path):
    export = make_export(tmp_path, "dcgan", ["data.size=32"])
    assert "onnx" not in json.loads((Path(export) / "export.json").read_text())


def test_a_graph_that_fails_its_check_is_not_kept_and_the_export_runs_on_torch(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # every difference is too large
    with pytest.warns(UserWarning, match="no ONNX graphs in this export, it runs on torch only"):
        export = make_export(tmp_path, "fast_style", TINY_FAST_STYLE)
    meta = json.loads((Path(export) / "export.json").read_text())
    assert meta["onnx"] == {} and "ONNX output differs from PyTorch" in meta["onnx_error"]
    assert not list(Path(export).glob("*.onnx"))
    pipe = FastStylePipeline.from_export(export, "cpu")
    assert pipe.describe()["backend"] == "torch" and not pipe.onnx
    (out,) = pipe(pictures((20, 24, 3)))
    assert out.shape == (20, 24, 3)
    with pytest.raises(ConfigError, match="no checked ONNX graph"):
        FastStylePipeline.from_export(export, "cpu", backend="onnxruntime")


def without_graphs(tmp_path, monkeypatch) -> str:
    """A fast-style export written as before exports carried graphs."""
    with monkeypatch.context() as patch:
        patch.setattr(onnx_export, "GRAPH_FAMILIES", ())
        return make_export(tmp_path, "fast_style", TINY_FAST_STYLE)


def test_an_export_without_graphs_runs_on_torch(tmp_path, monkeypatch):
    export = without_graphs(tmp_path, monkeypatch)
    assert not list(Path(export).glob("*.onnx"))
    assert FastStylePipeline.from_export(export, "cpu").describe()["backend"] == "torch"


def test_an_export_whose_graph_was_removed_is_refused_as_damaged(tmp_path):
    export = make_export(tmp_path, "fast_style", TINY_FAST_STYLE)
    assert FastStylePipeline.from_export(export, "cpu").describe()["backend"] == "onnxruntime"
    (Path(export) / "G.onnx").unlink()  # its manifest records the graph: a file went missing
    with pytest.raises(InvalidExport, match="G.onnx is missing"):
        FastStylePipeline.from_export(export, "cpu")


def test_genart_onnx_adds_graphs_to_an_export_without_them(tmp_path, capsys, monkeypatch):
    with monkeypatch.context() as patch:  # as an export written before graphs were
        patch.setattr(onnx_export, "GRAPH_FAMILIES", ())
        export = Path(make_export(tmp_path, "cyclegan", TINY["cyclegan"]))
    assert TranslationPipeline.from_export(str(export), "cpu").describe()["backend"] == "torch"
    assert main(["onnx", str(export)]) == 0
    assert f"wrote {export}/G_AB.onnx" in capsys.readouterr().out
    assert json.loads((export / "export.json").read_text())["onnx"] == {
        "G_AB": "G_AB.onnx", "G_BA": "G_BA.onnx"}  # fmt: skip
    assert (
        TranslationPipeline.from_export(str(export), "cpu").describe()["backend"] == "onnxruntime"
    )


def test_genart_onnx_without_out_needs_an_export_folder(tmp_path, capsys):
    make_export(tmp_path, "fast_style", TINY_FAST_STYLE)
    assert main(["onnx", str(tmp_path / "fast_style-ckpt")]) == 2
    assert "not an export; give --out for the graphs of a run" in capsys.readouterr().err


# --- onnxruntime against torch ---------------------------------------------------------------


def both(cls, export, **options):
    """The pipeline of ``export`` on each backend (the onnxruntime one checked to be it)."""
    ort = cls.from_export(export, "cpu", backend="onnxruntime", **options)
    assert ort.describe()["backend"] == "onnxruntime" and ort.onnx
    return ort, cls.from_export(export, "cpu", backend="torch", **options)


@pytest.mark.parametrize("tile", [0, 32])
@pytest.mark.parametrize(
    "controls", [{}, {"strength": 0.6}, {"strength": 0.8, "preserve_color": "ycbcr"}]
)
def test_fast_style_on_onnxruntime_is_within_one_grey_level_of_torch(exports, tile, controls):
    ort, eager = both(FastStylePipeline, exports["fast_style"], tile=tile)
    images = pictures((40, 56, 3), (17, 9, 3), (40, 56, 3), seed=1)  # batched by size
    assert grey_levels_apart(ort(images, **controls), eager(images, **controls)) <= 1


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
@pytest.mark.parametrize("tile", [0, 32])
def test_translation_on_onnxruntime_is_within_one_grey_level_of_torch(exports, model, tile):
    ort, eager = both(TranslationPipeline, exports[model], tile=tile)
    images = pictures((64, 48, 3), (20, 30, 3), seed=2)
    for direction in ort.directions:
        assert grey_levels_apart(ort(images, direction), eager(images, direction)) <= 1


@pytest.mark.parametrize("tile", [0, 32])
def test_adain_on_onnxruntime_is_within_one_grey_level_of_torch(exports, tile):
    ort, eager = both(AdaINPipeline, exports["adain"], tile=tile)
    content, a, b = pictures((64, 56, 3), (24, 24, 3), (32, 16, 3), seed=3)
    for call in ({}, {"alpha": 0.5, "weights": [0.3, 0.7], "preserve_color": "yiq"}):
        styles = [a, b] if "weights" in call else [a]
        assert grey_levels_apart([ort(content, styles, **call)],
                                 [eager(content, styles, **call)]) <= 1  # fmt: skip


def test_bf16_runs_on_torch(exports):
    pipe = FastStylePipeline.from_export(exports["fast_style"], "cpu", precision="bf16")
    assert pipe.describe()["backend"] == "torch"
    with pytest.raises(ConfigError, match="bf16 runs on torch"):
        FastStylePipeline.from_export(
            exports["fast_style"], "cpu", precision="bf16", backend="onnxruntime"
        )


# --- threads ---------------------------------------------------------------------------------


def test_onnxruntime_threads_follow_torchs_outside_ray(exports, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert onnx_export.intra_op_threads() == 3
    pipe = FastStylePipeline.from_export(exports["fast_style"], "cpu")
    assert pipe.describe()["threads"] == 3
    assert pipe.onnx["G"].session.get_session_options().intra_op_num_threads == 3


# --- the CLI and the server ------------------------------------------------------------------


@pytest.mark.parametrize("model", ["fast_style", "pix2pix", "adain"])
def test_the_backend_flag_reaches_the_verbs(exports, model, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(pictures((24, 32, 3), seed=4)[0]).save(photo)
    argv = {
        "fast_style": ["stylize", "fast", "--model", exports[model], "--input", str(photo)],
        "pix2pix": ["translate", exports[model], "--input", str(photo)],
        "adain": ["stylize", "adain", "--model", exports[model], "--content", str(photo),
                  "--style", str(photo)],
    }[model]  # fmt: skip
    outputs = []
    for backend in ("torch", "onnxruntime"):
        folder = tmp_path / backend
        # translate writes into a folder; the others to a file
        out = folder if model == "pix2pix" else folder / "photo.png"
        assert main([*argv, "--output", str(out), "--backend", backend]) == 0
        outputs.append(np.asarray(Image.open(folder / "photo.png")))
        if model == "adain":  # its JSON says which backend ran
            assert json.loads((folder / "photo.json").read_text())["backend"] == backend
    assert grey_levels_apart(outputs[:1], outputs[1:]) <= 1
    with pytest.raises(SystemExit):  # argparse: exit status 2, the choices named
        main([*argv, "--output", str(tmp_path / "x.png"), "--backend", "tensorrt"])


def test_onnxruntime_asked_of_an_export_without_graphs_is_one_line(tmp_path, capsys, monkeypatch):
    export = without_graphs(tmp_path, monkeypatch)
    Image.fromarray(pictures((24, 32, 3))[0]).save(tmp_path / "photo.png")
    argv = ["stylize", "fast", "--model", export, "--input", str(tmp_path / "photo.png"),
            "--output", str(tmp_path / "out.png"), "--backend", "onnxruntime"]  # fmt: skip
    assert main(argv) == 2
    assert "backend onnxruntime: this export has no checked ONNX graph" in capsys.readouterr().err


def test_the_models_page_says_which_backend_runs(exports):
    from test_http_app import Handle, call

    from genart.serve import app
    from genart.serve.deployments import ImageModels

    catalogue = {"uri": str(Path(exports["fast_style"]).parent)}
    style = ImageModels.func_or_class(catalogue, "onnxruntime")
    style.loaded["fast_style"] = style._build("fast_style").describe()  # as a load records it

    async def listing():
        return style.listing()

    async def describe():
        return style.describe()

    async def nothing():
        return {"loaded": {}}

    gateway = app.Gateway({"catalogue": catalogue, "backend": "onnxruntime"},
                          image=Handle(listing=listing, describe=describe),
                          latent=Handle(describe=nothing))  # fmt: skip
    reply = call(app.create_api(gateway), "GET", "/models")
    assert reply.status == 200
    (served,) = [m for m in reply.json()["catalogue"] if m["name"] == "fast_style"]
    assert served["backend"] == "onnxruntime" and served["threads"] >= 1
    torch_only = ImageModels.func_or_class(catalogue, "torch")
    assert torch_only._build("fast_style").describe()["backend"] == "torch"


def test_serve_settings_take_a_backend_and_refuse_unknown_ones():
    from pydantic import ValidationError

    from genart.serve.settings import AdaINServerSettings, AppSettings

    assert AppSettings.model_validate({}).backend == "auto"
    assert AdaINServerSettings(backend="torch").backend == "torch"
    with pytest.raises(ValidationError, match="backend"):
        AppSettings.model_validate({"backend": "tensorrt"})


def test_the_ray_data_runner_builds_its_pipelines_on_the_backend_asked(exports):
    from genart.pipelines import runner

    export = exports["fast_style"]
    assert runner.Source(export=export).build("cpu").describe()["backend"] == "onnxruntime"
    asked = runner.Source(export=export, options={"backend": "torch"})
    assert asked.build("cpu").describe()["backend"] == "torch"
