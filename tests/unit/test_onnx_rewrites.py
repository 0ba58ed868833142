"""The graph rewrites for onnxruntime's CPU kernels (genart.onnx_export): each rewritten layer
still matches torch at sizes other than the one it was traced at (odd ones included), and the
torch network is left as it was. No Ray."""

import numpy as np
import pytest
import torch
from torch import nn

from genart.models.layers import ConvNormAct, UpsampleConv
from genart.onnx_export import TOLERANCE, export_checked

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

SIZES = [(7, 11), (6, 5), (16, 16)]


def exported_ops(net: nn.Module, tmp_path, channels: int, sizes=SIZES) -> set[str]:
    """Export ``net`` as genart does; check onnxruntime against torch at each (h, w) of
    ``sizes``; return the graph's operator types."""
    path = tmp_path / "net.onnx"
    torch.manual_seed(0)
    export_checked(net, path, torch.rand(2, channels, 6, 10) * 2 - 1)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for height, width in sizes:
        images = torch.rand(1, channels, height, width) * 2 - 1
        with torch.no_grad():
            expected = net(images).numpy()
        (got,) = session.run(None, {"image": images.numpy()})
        assert got.shape == expected.shape, (height, width)
        assert np.abs(got - expected).max() <= TOLERANCE, (height, width)
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "output_padding", "bias"),
    [(3, 2, 1, 1, False), (4, 2, 1, 0, True), (3, 3, 0, 0, True), (2, 2, 0, 0, False)],
)
def test_transposed_conv_becomes_subpixel_convs(
    tmp_path, kernel, stride, padding, output_padding, bias
):
    """A transposed conv whose output is ``stride`` x its input (CycleGAN's, Pix2Pix's) runs
    as one conv per output phase: no ConvTranspose is left in the graph."""
    net = nn.ConvTranspose2d(5, 6, kernel, stride, padding, output_padding, bias=bias)
    ops = exported_ops(net.eval(), tmp_path, 5)
    assert "ConvTranspose" not in ops and "Conv" in ops


def test_other_transposed_convs_are_left_alone(tmp_path):
    net = nn.ConvTranspose2d(5, 6, 3, 2, 1, output_padding=0)  # 2h - 1 out: no phase split
    assert "ConvTranspose" in exported_ops(net.eval(), tmp_path, 5)


@pytest.mark.parametrize(
    "net",
    [
        nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(8, 3, 9), nn.Tanh()),  # fast style's
        nn.Conv2d(8, 3, 3, padding=1, bias=False),
        nn.Conv2d(8, 1, (1, 5), padding=(0, 2)),
    ],
)
def test_conv_to_an_image_runs_on_2x2_blocks(tmp_path, net):
    """A stride-1 conv to a few channels is computed on SpaceToDepth blocks (4x the channels,
    which fill onnxruntime's channel blocks), with odd sides padded and cropped back."""
    ops = exported_ops(net.eval(), tmp_path, 8)
    assert "SpaceToDepth" in ops


def test_conv_to_many_channels_is_left_alone(tmp_path):
    assert "SpaceToDepth" not in exported_ops(nn.Conv2d(8, 16, 3).eval(), tmp_path, 8)


@pytest.mark.parametrize("act", ["relu", "none"])
def test_upsample_conv_runs_at_the_input_resolution(tmp_path, act):
    """Nearest upsampling, reflection padding and a 3x3 conv export as 2x2 convs on the
    small input (no Resize in the graph); the torch network keeps its layers and outputs."""
    net = nn.Sequential(
        UpsampleConv(6, 5, 3, norm="instance", act=act, padding_mode="reflect"),
        ConvNormAct(5, 8, 3, norm="none", act="none", padding_mode="reflect"),
    ).eval()
    images = torch.rand(1, 6, 5, 7)
    with torch.no_grad():
        before = net(images)
    ops = exported_ops(net, tmp_path, 6)
    assert "Resize" not in ops and "Upsample" not in ops
    assert isinstance(net[0][0], nn.Upsample) and isinstance(net[0][1][1], nn.Conv2d)
    with torch.no_grad():
        assert torch.equal(net(images), before)


def test_other_upsample_convs_are_left_alone(tmp_path):
    net = UpsampleConv(6, 5, 5, norm="none", act="none", padding_mode="reflect")
    assert "Resize" in exported_ops(net.eval(), tmp_path, 6)


def test_upsample_conv_activation_runs_on_each_phase(tmp_path):
    """Without a norm between, the ReLU follows each phase's conv in the graph (where
    onnxruntime fuses it into the conv), not the interleaved output."""
    net = UpsampleConv(6, 5, 3, norm="none", act="relu", padding_mode="reflect").eval()
    exported_ops(net, tmp_path, 6)
    graph = onnx.load(str(tmp_path / "net.onnx")).graph
    made_by = {output: node.op_type for node in graph.node for output in node.output}
    relus = [node for node in graph.node if node.op_type == "Relu"]
    assert len(relus) == 4 and all(made_by[node.input[0]] == "Conv" for node in relus)


@pytest.mark.parametrize(
    "net",
    [
        nn.Conv2d(128, 128, 3, padding=1),
        nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(128, 160, 3, bias=False)),  # ResNet's
        nn.Conv2d(144, 128, 3),  # unpadded: the output is smaller than the input
    ],
)
def test_wide_3x3_conv_runs_by_winograd(tmp_path, net):
    """A 3x3 conv between many channels becomes matrix products over 6x6 tiles (F(4x4, 3x3)),
    sides that are not whole tiles padded and cropped back: no 3x3 Conv is left."""
    channels = next(m for m in net.modules() if isinstance(m, nn.Conv2d)).in_channels
    ops = exported_ops(net.eval(), tmp_path, channels)
    graph = onnx.load(str(tmp_path / "net.onnx")).graph
    convs = [node for node in graph.node if node.op_type == "Conv"]
    kernels = [list(onnx.helper.get_attribute_value(attr)) for node in convs
               for attr in node.attribute if attr.name == "kernel_shape"]  # fmt: skip
    assert "MatMul" in ops and [3, 3] not in kernels


def test_narrow_3x3_conv_is_left_alone(tmp_path):
    """Below WINOGRAD_CHANNELS the tiles' transforms cost more than they save."""
    assert "MatMul" not in exported_ops(nn.Conv2d(64, 128, 3).eval(), tmp_path, 64)


def test_graph_past_the_tolerance_keeps_direct_convs(tmp_path, monkeypatch):
    """A Winograd graph off by more than TOLERANCE (here made wrong on purpose) is replaced by
    the graph without it, still checked against torch."""
    from genart import onnx_export

    monkeypatch.setattr(onnx_export, "_WINOGRAD_AT", onnx_export._WINOGRAD_AT * 1.01)
    ops = exported_ops(nn.Conv2d(128, 128, 3, padding=1).eval(), tmp_path, 128)
    assert "MatMul" not in ops and "Conv" in ops
