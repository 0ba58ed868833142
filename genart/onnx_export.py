"""ONNX graphs of an export's networks, checked against PyTorch with onnxruntime before they are
kept, and the onnxruntime backend that runs them.

An export (``genart export``) carries ``<net>.onnx`` beside each ``<net>.pt`` (fast style's and
Pix2Pix's ``G``, CycleGAN's ``G_AB`` and ``G_BA``, AdaIN's ``decoder``), with dynamic batch,
height and width; its manifest (:mod:`genart.export`) lists them under ``onnx``. A graph whose
outputs differ from torch's is not kept, and the manifest says why under ``onnx_error``: the
export still runs on torch. A broken graph must fail here, not in someone's serving stack.

The graphs compute the same functions as the networks with fewer operations on onnxruntime's CPU
kernels (:func:`with_upsampled_convs`, :func:`faster_on_cpu`); torch's networks are unchanged.

Pipelines pick their backend with :func:`choose_backend`: ``auto`` runs onnxruntime on CPU where
the export has checked graphs (the same networks, faster on CPU), torch on a GPU.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from genart import storage
from genart.errors import ConfigError
from genart.models.layers import (
    NoiseDropout,
    UpsampleConv,
    pad_to_multiple,
    stride_of,
    without_test_dropout,
)
from genart.registry import unwrap

TOLERANCE = 1e-4  # max |onnxruntime - torch| accepted
# The families whose exports carry graphs: image-to-image networks (DCGAN's generator is small
# and takes latents; the optimisation families have no export).
GRAPH_FAMILIES = ("fast_style", "pix2pix", "cyclegan", "adain")
Backend = Literal["auto", "torch", "onnxruntime"]
BACKENDS = ("auto", "torch", "onnxruntime")


def export_checked(
    net: nn.Module, path: str | Path, sample: torch.Tensor | dict[str, torch.Tensor]
) -> float:
    """Write ``net`` as ONNX with dynamic batch, height and width; returns max |ORT - torch|.

    The graph has one input ``image`` and one output ``output``, both (B, C, H, W); a dict
    ``sample`` names several inputs instead (in ``net``'s argument order), each image input with
    its own dynamic height and width (other inputs, such as scalars, keep their shapes).
    The graph is traced from :func:`with_upsampled_convs` of ``net`` and rewritten by
    :func:`faster_on_cpu`; onnxruntime's output on ``sample`` is compared with PyTorch's (of
    ``net`` itself). Where Winograd's convs put it above ``TOLERANCE`` the graph is rewritten
    without them; a difference still above it raises ``AssertionError``.
    """
    import onnxruntime

    net = unwrap(net).eval()
    device = next(net.parameters()).device
    traced = with_upsampled_convs(net)
    inputs = {"image": sample} if isinstance(sample, torch.Tensor) else dict(sample)
    inputs = {name: value.to(device) for name, value in inputs.items()}
    dynamic = {"output": {0: "batch", 2: "height", 3: "width"}}
    for name, value in inputs.items():
        if value.dim() == 4:
            sides = ("height", "width") if name == "image" else (f"{name}_height", f"{name}_width")
            dynamic[name] = {0: "batch", 2: sides[0], 3: sides[1]}
    # The TorchScript-based exporter: the dynamo one needs onnxscript, not a dependency here.
    # Its warnings are benign here (instance norm always uses the input's statistics and checks
    # its channel count, a constant; some Slice ops are not constant-folded) and would only
    # alarm users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            traced,
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=["output"],
            dynamic_axes=dynamic,
            dynamo=False,
        )
    with torch.no_grad():
        expected = net(*inputs.values()).cpu().numpy()
    traced_graph = onnx.load(str(path))
    # Winograd's products round differently from a direct conv's (relative error ~1e-5 a
    # layer); a network where that adds up past the tolerance keeps its direct convs.
    for winograd in (True, False):
        model = faster_on_cpu(copy.deepcopy(traced_graph), winograd=winograd)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {name: value.cpu().numpy() for name, value in inputs.items()})
        diff = float(np.abs(got - expected).max())
        if diff <= TOLERANCE:
            return diff
    raise AssertionError(f"ONNX output differs from PyTorch by {diff:.2e} (> {TOLERANCE})")


# --- the same functions, laid out for onnxruntime's CPU kernels -----------------------------
# onnxruntime's convolutions run as fast as torch's (both near the CPU's peak), so the graphs
# gain where they do less work than torch's layers: upsampling convs at the input's resolution
# (traced from a copy of the network), and, rewritten in the graph, convs to an image's few
# channels and transposed convs (see faster_on_cpu). Outputs are the same to float rounding;
# the rewritten graph is checked against torch like any other.

# Nearest 2x upsampling, reflection padding by one and a 3x3 conv (UpsampleConv) read each
# input pixel four times: output pixel (2y + a, 2x + b) is a 2x2 conv, at the input's
# resolution, of the input padded by its edge values, starting at (y + a, x + b). The 2x2
# kernel of phase a sums the 3x3 kernel's taps that land on the same input pixel (rows of
# _PHASE_TAPS[a]): 16 products per output pixel instead of 36.
_PHASE_TAPS = torch.tensor([[[1.0, 0, 0], [0, 1, 1]], [[1.0, 1, 0], [0, 0, 1]]])


class UpsampledConv(nn.Module):
    """``conv`` over the nearest-2x-upsampled, reflection-padded input, computed as four 2x2
    convs at the input's resolution, interleaved (the same function, to float rounding).
    Built from a 3x3, stride-1, unpadded ``conv``; for export only."""

    def __init__(self, conv: nn.Conv2d, activation: nn.Module | None = None):
        super().__init__()
        weight, taps = conv.weight.detach(), _PHASE_TAPS.to(conv.weight)
        phases = [taps[a] @ weight @ taps[b].T for a in (0, 1) for b in (0, 1)]
        self.register_buffer("weight", torch.stack(phases))  # (phase, out, in, 2, 2)
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        self.activation = activation or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Phase (a, b) reads the input padded by its edge on top (a = 0) or bottom (a = 1), left
        # (b = 0) or right (b = 1); an elementwise activation runs on each phase, where
        # onnxruntime fuses it into the conv.
        phases = [self.activation(F.conv2d(F.pad(x, (1 - b, b, 1 - a, a), mode="replicate"),
                                           self.weight[2 * a + b], self.bias))
                  for a in (0, 1) for b in (0, 1)]  # fmt: skip
        # Interleaved columns first, then rows: each a concatenation of whole blocks and a free
        # reshape (exported so; onnxruntime's DepthToSpace moves one value at a time).
        rows = [torch.stack(phases[2 * a : 2 * a + 2], -1).flatten(-2) for a in (0, 1)]
        return torch.stack(rows, -2).flatten(-3, -2)


def _upsamples_3x3(block: UpsampleConv) -> bool:
    """Whether ``block`` is nearest 2x upsampling, reflection padding by one and a plain 3x3
    conv (the case :class:`UpsampledConv` computes)."""
    upsample, layers = block[0], block[1]
    pad, conv = layers[0], layers[1]
    return (upsample.mode == "nearest" and upsample.scale_factor in (2, (2, 2))
            and isinstance(pad, nn.ReflectionPad2d) and tuple(pad.padding) == (1, 1, 1, 1)
            and isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)
            and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.dilation == (1, 1)
            and conv.groups == 1)  # fmt: skip


def with_upsampled_convs(net: nn.Module) -> nn.Module:
    """``net`` itself, or a copy of it in which each :func:`_upsamples_3x3` block computes its
    conv as an :class:`UpsampledConv`: the graph exported from it does less than half the
    multiplications of those convs. ``net`` is left as it is."""
    if not any(isinstance(m, UpsampleConv) and _upsamples_3x3(m) for m in net.modules()):
        return net
    net = copy.deepcopy(net)
    for block in net.modules():
        if isinstance(block, UpsampleConv) and _upsamples_3x3(block):
            layers = block[1]
            relu = len(layers) > 2 and isinstance(layers[2], nn.ReLU)  # no norm between
            conv = UpsampledConv(layers[1], layers[2] if relu else None)
            block[0], layers[0], layers[1] = nn.Identity(), nn.Identity(), conv
            if relu:
                layers[2] = nn.Identity()
    return net


FEW_CHANNELS = 4  # a conv to at most this many channels (an image) is computed in 2x2 blocks


def faster_on_cpu(model: onnx.ModelProto, winograd: bool = True) -> onnx.ModelProto:
    """``model`` rewritten in place, same outputs (the same products, summed in another order):

    - each ConvTranspose whose output is ``stride`` times its input as one conv per output
      phase, interleaved: onnxruntime's ConvTranspose is a GEMM and a col2im scatter,
      slower than its Conv for the same products;
    - each stride-1 conv to at most ``FEW_CHANNELS`` channels on 2x2 blocks (SpaceToDepth, a
      conv to 4x the channels at half the resolution, DepthToSpace): onnxruntime's NCHWc conv
      computes outputs in blocks of 8 or 16 channels, so a conv to 3 computes 16 and keeps 3;
    - each 3x3 stride-1 conv between at least ``WINOGRAD_CHANNELS`` channels by Winograd's
      F(4x4, 3x3) (:func:`_winograd`; unless not ``winograd``): 4x fewer multiplications,
      as matrix products.

    Height and width stay dynamic."""
    graph = model.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == "ConvTranspose":
            replaced = _subpixel(node, constants)
        elif node.op_type == "Conv":
            replaced = _blocked(node, constants) or (winograd and _winograd(node, constants))
        else:
            replaced = None
        if not replaced:
            nodes.append(node)
            continue
        new_nodes, new_constants = replaced
        nodes += new_nodes
        graph.initializer.extend(new_constants)
    graph.ClearField("node")
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    return model


class _Constants:
    """The constant tensors a rewrite adds, each named after the output it replaces."""

    def __init__(self, out: str):
        self.out = out
        self.tensors: list[onnx.TensorProto] = []

    def __call__(self, suffix: str, value: np.ndarray) -> str:
        """Add ``value`` as ``<out>_<suffix>``; returns that name."""
        name = f"{self.out}_{suffix}"
        self.tensors.append(onnx.numpy_helper.from_array(value, name))
        return name


def _ints(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def _plain_2d(node: onnx.NodeProto, constants: dict) -> tuple[dict, np.ndarray] | None:
    """A 2-D (transposed) conv's attributes and constant weight, if it has one group, no
    dilation and explicit padding (else None: left as it is)."""
    attrs = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
    if node.input[1] not in constants or attrs.get("group", 1) != 1:
        return None
    weight = onnx.numpy_helper.to_array(constants[node.input[1]])
    explicit = attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    if weight.ndim != 4 or any(d != 1 for d in attrs.get("dilations", [1, 1])) or not explicit:
        return None
    attrs.setdefault("pads", [0, 0, 0, 0])
    attrs.setdefault("strides", [1, 1])
    return attrs, weight


def _phase(kernel: int, stride: int, pad: int, phase: int) -> tuple[list[int], tuple[int, int]]:
    """Along one axis of a transposed conv: the kernel taps that outputs ``phase`` (mod
    ``stride``) use, in the order a conv's window meets them, and that conv's padding."""
    first = (phase + pad) % stride
    taps = list(range(first, kernel, stride))
    shift = (phase + pad - first) // stride  # the input index of tap ``first``, less the output's
    return taps[::-1], (len(taps) - 1 - shift, shift)


def _subpixel(node: onnx.NodeProto, constants: dict):
    """A ConvTranspose with output ``stride`` x input as one conv per output phase, interleaved;
    None where that does not apply."""
    plain = _plain_2d(node, constants)
    if plain is None or "output_shape" in plain[0]:
        return None
    attrs, weight = plain  # (in, out, kh, kw)
    (stride, stride_w), pads = attrs["strides"], attrs["pads"]
    extra = attrs.get("output_padding", [0, 0])
    kernel = weight.shape[2:]
    if (
        stride != stride_w
        or stride < 2
        or any(kernel[d] + extra[d] - pads[d] - pads[d + 2] != stride for d in range(2))
    ):
        return None
    rows = [_phase(kernel[0], stride, pads[0], phase) for phase in range(stride)]
    cols = [_phase(kernel[1], stride, pads[1], phase) for phase in range(stride)]
    if any(min(pad) < 0 or not taps for taps, pad in rows + cols):
        return None
    out = node.output[0]
    nodes, constants_out, phases = [], [], []
    for i, (row_taps, (top, bottom)) in enumerate(rows):
        for j, (col_taps, (left, right)) in enumerate(cols):
            name = f"{out}_phase{i}{j}"
            kernel_ij = weight[:, :, row_taps][:, :, :, col_taps].transpose(1, 0, 2, 3)
            constants_out.append(onnx.numpy_helper.from_array(kernel_ij.copy(), f"{name}_weight"))
            inputs = [node.input[0], f"{name}_weight", *node.input[2:3]]
            nodes.append(onnx.helper.make_node("Conv", inputs, [name], name=name,
                                               pads=[top, left, bottom, right]))  # fmt: skip
            phases.append(name)
    grid = [phases[i * stride : (i + 1) * stride] for i in range(stride)]
    interleaving, interleave_constants = _interleave(grid, out)
    return nodes + interleaving, constants_out + interleave_constants


def _interleave(phases: list[list[str]], out: str):
    """Nodes writing ``out`` (B, C, sH, sW) from ``phases[i][j]`` (B, C, H, W), its pixels
    (s * y + i, s * x + j): columns interleaved first, then rows, each a Concat of whole blocks
    and a Reshape (onnxruntime's DepthToSpace, moving one value at a time, is twice as slow)."""
    stride, make = len(phases), onnx.helper.make_node
    constants = {"last": [-1], "axis3": [3], "join": [0, 0, 0, -1], "taller": [1, 1, stride, 1]}
    names = {key: f"{out}_{key}" for key in constants}
    nodes, rows = [], []
    for i, row in enumerate(phases):
        nodes += [make("Unsqueeze", [phase, names["last"]], [f"{phase}_col"]) for phase in row]
        nodes += [
            make("Concat", [f"{phase}_col" for phase in row], [f"{out}_row{i}_cols"], axis=-1),
            make("Reshape", [f"{out}_row{i}_cols", names["join"]], [f"{out}_row{i}"]),
            make("Unsqueeze", [f"{out}_row{i}", names["axis3"]], [f"{out}_row{i}_up"]),
        ]
        rows.append(f"{out}_row{i}_up")
    nodes += [
        make("Concat", rows, [f"{out}_rows"], axis=3),  # (B, C, H, s, sW)
        make("Shape", [f"{out}_row0"], [f"{out}_row_shape"]),
        make("Mul", [f"{out}_row_shape", names["taller"]], [f"{out}_shape"]),
        make("Reshape", [f"{out}_rows", f"{out}_shape"], [out]),
    ]
    tensors = [onnx.numpy_helper.from_array(np.array(value, np.int64), names[key])
               for key, value in constants.items()]  # fmt: skip
    return nodes, tensors


def _blocked_weight(weight: np.ndarray) -> np.ndarray:
    """The kernel from 2x2-block inputs (SpaceToDepth: channel (p * 2 + q) * C + c is pixel
    (p, q) of each block) to 2x2-block outputs (DepthToSpace's order, the same), for an odd-sized
    ``weight``: output pixel a of a block meets input pixel p of the block ``j`` blocks along its
    window through tap 2 * j + p - a, where that tap is in the kernel."""
    out_ch, in_ch, kh, kw = weight.shape
    blocked = np.zeros((4 * out_ch, 4 * in_ch, kh // 2 + 1, kw // 2 + 1), weight.dtype)
    for a, b, p, q in np.ndindex(2, 2, 2, 2):
        taps = weight[:, :, abs(p - a) :: 2, abs(q - b) :: 2]
        row, col = int(p < a), int(q < b)  # the block where the first tap lands
        blocked[(a * 2 + b) * out_ch : (a * 2 + b + 1) * out_ch,
                (p * 2 + q) * in_ch : (p * 2 + q + 1) * in_ch,
                row : row + taps.shape[2], col : col + taps.shape[3]] = taps  # fmt: skip
    return blocked


def _blocked(node: onnx.NodeProto, constants: dict):
    """A stride-1 conv to at most ``FEW_CHANNELS`` channels computed on 2x2 blocks: 4x the
    output channels fill onnxruntime's channel blocks; None where that does not apply."""
    plain = _plain_2d(node, constants)
    if plain is None:
        return None
    attrs, weight = plain  # (out, in, kh, kw)
    odd_kernel = all(side % 2 for side in weight.shape[2:])  # an even one would lose a row
    bias = node.input[2] if len(node.input) > 2 else ""
    if weight.shape[0] > FEW_CHANNELS or attrs["strides"] != [1, 1] or not odd_kernel:
        return None
    if bias and bias not in constants:  # its 4 copies are made here
        return None
    top, left, bottom, right = attrs["pads"]
    out, make = node.output[0], onnx.helper.make_node
    const, ints = _Constants(out), _ints
    weights = [const("weight", _blocked_weight(weight))]
    if bias:  # each block's outputs have the same biases
        weights.append(const("bias", np.tile(onnx.numpy_helper.to_array(constants[bias]), 4)))
    kh, kw = weight.shape[2:]
    nodes = [
        make("Shape", [node.input[0]], [f"{out}_size"], start=2, end=4),
        make("Add", [f"{out}_size", const("pad_sum", ints(top + bottom, left + right))],
             [f"{out}_padded"]),
        # Padded to even sides (SpaceToDepth needs them), the extra row and column cropped after.
        make("Mod", [f"{out}_padded", const("two", ints(2, 2))], [f"{out}_odd"]),
        make("Add", [f"{out}_odd", const("pad_end", ints(bottom, right))], [f"{out}_end_pads"]),
        make("Concat", [const("pad_begin", ints(0, 0, top, left, 0, 0)), f"{out}_end_pads"],
             [f"{out}_pads"], axis=0),
        make("Pad", [node.input[0], f"{out}_pads"], [f"{out}_even"]),
        make("SpaceToDepth", [f"{out}_even"], [f"{out}_s2d"], blocksize=2),
        make("Conv", [f"{out}_s2d", *weights], [f"{out}_blocks"]),
        make("DepthToSpace", [f"{out}_blocks"], [f"{out}_full"], blocksize=2, mode="DCR"),
        make("Sub", [f"{out}_padded", const("kernel_less_one", ints(kh - 1, kw - 1))],
             [f"{out}_crop"]),
        make("Slice", [f"{out}_full", const("zero", ints(0, 0)), f"{out}_crop",
                       const("axes", ints(2, 3))], [out]),
    ]  # fmt: skip
    return nodes, const.tensors


# Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray 2016, "Fast Algorithms for Convolutional
# Neural Networks"): a 6x6 input tile d and a 3x3 kernel g give the 4x4 outputs
# A^T [(G g G^T) * (B^T d B)] A, 36 products per channel pair and tile instead of 144. Points 0,
# +-1, +-2 and infinity.
_WINOGRAD_BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                        np.float64)  # fmt: skip
_WINOGRAD_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                        [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])  # fmt: skip
_WINOGRAD_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                         [0, 1, -1, 8, -8, 1]], np.float64)  # fmt: skip
# Below this many input or output channels the tiles' transforms (memory-bound) cost more than
# the products they save. Measured on one core, one conv at 32-128 px: 256 channels 1.5-1.8x
# faster, 128 channels 1.3-1.4x at 32-64 px and even at 128 px, 64 even or slower. Fast style's
# network (128 channels) ran 1.2x faster at 256 px (1 thread) and 10 % slower at 512 px on 2.
WINOGRAD_CHANNELS = 128


def _winograd_constants(out_ch: int, bias: np.ndarray) -> dict[str, np.ndarray]:
    """The rewrite's constant tensors for a conv to ``out_ch`` channels with ``bias``: the
    input tiles' transform as 36 6x6 filters, G and G^T (the kernels are transformed in the
    graph, where onnxruntime folds them when a session starts: the file keeps the 3x3 kernels,
    a quarter of the size), the output transform as a (16, 36) matrix (each tile's 4x4 outputs
    from its 36 positions), and the bias in DepthToSpace's DCR channel order (output pixel
    (i, j) of channel k is channel (4 i + j) * out_ch + k)."""
    tensors = {
        "tile_filters": np.kron(_WINOGRAD_BT, _WINOGRAD_BT).reshape(36, 1, 6, 6),
        "g": _WINOGRAD_G,
        "g_t": _WINOGRAD_G.T,
        "tile_outputs": np.kron(_WINOGRAD_AT, _WINOGRAD_AT),
        "out_bias": np.tile(bias, 16).reshape(16 * out_ch, 1, 1),
    }
    return {name: np.ascontiguousarray(value, np.float32) for name, value in tensors.items()}


def _winograd(node: onnx.NodeProto, constants: dict):
    """A 3x3, stride-1 conv between at least ``WINOGRAD_CHANNELS`` channels by F(4x4, 3x3):
    each channel's 6x6 tiles (stride 4, zero-padded to whole tiles) transformed by a conv to
    36 channels; one matrix product per tile position (batched: 36 x (K, C) @ (C, tiles)); all
    tiles' 4x4 outputs by one more, (16, 36) @ (36, K x tiles), put in place by DepthToSpace;
    cropped to the conv's output size. None where that does not apply."""
    plain = _plain_2d(node, constants)
    if plain is None:
        return None
    attrs, weight = plain  # (out, in, 3, 3)
    out_ch, in_ch = weight.shape[:2]
    bias = node.input[2] if len(node.input) > 2 else ""
    wide = min(out_ch, in_ch) >= WINOGRAD_CHANNELS
    if weight.shape[2:] != (3, 3) or attrs["strides"] != [1, 1] or not wide:
        return None
    if bias and bias not in constants:  # the output transform takes it as a constant
        return None
    bias_values = onnx.numpy_helper.to_array(constants[bias]) if bias else np.zeros(out_ch)
    top, left, bottom, right = attrs["pads"]
    x, out, make = node.input[0], node.output[0], onnx.helper.make_node
    const, ints = _Constants(out), _ints
    tensors = {name: const(name, value)
               for name, value in _winograd_constants(out_ch, bias_values).items()}  # fmt: skip
    nodes = [
        # The kernels by tile position: G w G^T, (K, C, 6, 6) -> (36, K, C).
        make("MatMul", [tensors["g"], node.input[1]], [f"{out}_g_w"]),
        make("MatMul", [f"{out}_g_w", tensors["g_t"]], [f"{out}_g_w_gt"]),
        make("Reshape", [f"{out}_g_w_gt", const("kernel_rows_shape", ints(out_ch, in_ch, 36))],
             [f"{out}_kernel_rows"]),
        make("Transpose", [f"{out}_kernel_rows"], [f"{out}_kernels"], perm=[2, 0, 1]),
        make("Shape", [x], [f"{out}_batch_ch"], start=0, end=2),
        make("Shape", [x], [f"{out}_size"], start=2, end=4),
        make("Add", [f"{out}_size", const("pad_sum", ints(top + bottom, left + right))],
             [f"{out}_padded"]),
        # Each channel an image: (B * C, 1, H, W) -> (B * C, 36, tiles down, tiles across).
        # Padded as the conv pads, plus 3 zeros at the end: exactly ceil((padded - 2) / 4)
        # tiles a side, whatever the size (a Pad op would cost a pass over the input).
        make("Reshape", [x, const("one_channel", ints(-1, 1, 0, 0))], [f"{out}_channels"]),
        make("Conv", [f"{out}_channels", tensors["tile_filters"]], [f"{out}_tiles"],
             strides=[4, 4], pads=[top, left, bottom + 3, right + 3]),
        make("Shape", [f"{out}_tiles"], [f"{out}_tile_grid"], start=2, end=4),
        make("Concat", [f"{out}_batch_ch", const("flat_tiles", ints(36, -1))],
             [f"{out}_flat_shape"], axis=0),
        make("Reshape", [f"{out}_tiles", f"{out}_flat_shape"], [f"{out}_flat"]),  # (B, C, 36, T)
        make("Transpose", [f"{out}_flat"], [f"{out}_by_position"], perm=[0, 2, 1, 3]),
        make("MatMul", [f"{out}_kernels", f"{out}_by_position"], [f"{out}_products"]),
        # Every tile's 4x4 outputs at once, (16, 36) @ (B, 36, K x T): one large product, which
        # onnxruntime spreads over its threads (a transposed conv per channel did not).
        make("Slice", [f"{out}_batch_ch", const("zero", ints(0)), const("one", ints(1))],
             [f"{out}_batch"]),
        make("Concat", [f"{out}_batch", const("positions", ints(36, -1))],
             [f"{out}_positions_shape"], axis=0),
        make("Reshape", [f"{out}_products", f"{out}_positions_shape"], [f"{out}_position_rows"]),
        make("MatMul", [tensors["tile_outputs"], f"{out}_position_rows"], [f"{out}_outputs"]),
        make("Concat", [f"{out}_batch", const("output_channels", ints(16 * out_ch)),
                        f"{out}_tile_grid"], [f"{out}_pixels_shape"], axis=0),
        make("Reshape", [f"{out}_outputs", f"{out}_pixels_shape"], [f"{out}_pixels"]),
        make("Add", [f"{out}_pixels", tensors["out_bias"]], [f"{out}_biased"]),
        make("DepthToSpace", [f"{out}_biased"], [f"{out}_full"], blocksize=4, mode="DCR"),
        make("Sub", [f"{out}_padded", const("two", ints(2, 2))], [f"{out}_crop"]),
        make("Slice", [f"{out}_full", const("corner", ints(0, 0)), f"{out}_crop",
                       const("axes", ints(2, 3))], [out]),
    ]  # fmt: skip
    return nodes, const.tensors


# --- writing an export's graphs --------------------------------------------------------------


def probe(net: nn.Module, channels: int) -> torch.Tensor:
    """The input a graph is traced and checked on: two images of ``channels`` (features, for
    AdaIN's decoder), non-square, a few strides a side (a U-Net takes only multiples of its
    stride), so that no size is baked in."""
    stride = stride_of(net)
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, channels, 2 * stride, 3 * stride, generator=generator) * 2 - 1


def input_channels(net: nn.Module, cfg) -> int:
    """What a network takes: the data's channels (generators) or its first conv's inputs
    (AdaIN's decoder takes VGG features)."""
    if cfg.model == "adain":
        return next(m for m in net.modules() if isinstance(m, nn.Conv2d)).in_channels
    return cfg.data.channels


def write_graphs(folder: str | Path, nets: dict[str, nn.Module], cfg) -> dict[str, Any]:
    """Write ``<name>.onnx`` for each network into ``folder``, each checked against torch by
    onnxruntime; returns what an export's meta records: ``onnx`` ({name: file}) and
    ``onnx_max_diff``, or, where a graph cannot be written or fails its check, no graphs (those
    written are removed) and ``onnx_error`` saying why, after one warning: the export then runs
    on torch only.

    Exported in eval mode with Pix2Pix's test-time dropout off: onnxruntime's training-mode
    Dropout is not reproducible, and a deterministic graph is what serving wants.
    """
    folder = Path(folder)
    written, diffs = {}, {}
    try:
        for name, net in nets.items():
            path = folder / f"{name}.onnx"
            written[name] = path.name
            sample = probe(net, input_channels(net, cfg)).to(next(net.parameters()).device)
            with without_test_dropout(net):
                diffs[name] = export_checked(net, path, sample)
    except Exception as err:  # any failure: the export must still be written, for torch
        for file in written.values():
            (folder / file).unlink(missing_ok=True)
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        warnings.warn(f"no ONNX graphs in this export, it runs on torch only ({reason})",
                      stacklevel=2)  # fmt: skip
        return {"onnx": {}, "onnx_error": reason}
    return {"onnx": written, "onnx_max_diff": max(diffs.values(), default=0.0)}


# --- choosing and running a backend ----------------------------------------------------------


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def checked_graphs(uri: str, manifest: dict) -> dict[str, str]:
    """{net: graph URI} of the checked graphs an export's ``manifest`` lists and that are still
    there; {} for checkpoints, older exports, or a graph that failed its check or was removed
    (the pipeline then runs torch)."""
    graphs = {name: storage.join(uri, file) for name, file in (manifest.get("onnx") or {}).items()}
    if not graphs or not all(storage.exists(path) for path in graphs.values()):
        return {}
    return graphs


def choose_backend(
    wanted: str,
    device: torch.device,
    has_graphs: bool,
    installed: bool | None = None,
    test_dropout: bool = False,
) -> str:
    """``torch`` or ``onnxruntime`` for a pipeline on ``device``.

    ``auto``: onnxruntime on CPU where the export has checked graphs and onnxruntime is
    installed, torch otherwise (on a GPU torch is the fast one; onnxruntime here runs on CPU).
    Also torch where the networks keep dropout on at test time (``test_dropout``: Pix2Pix's
    noise, as in the paper), which the deterministic graphs leave out; asked for by name,
    onnxruntime runs them without it. ``onnxruntime`` asked for where it cannot run is a
    ConfigError saying why.
    """
    if wanted not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {wanted!r}")
    installed = onnxruntime_installed() if installed is None else installed
    why_not = (
        "this export has no checked ONNX graph (`genart onnx EXPORT` adds them)"
        if not has_graphs
        else "onnxruntime is not installed"
        if not installed
        else f"onnxruntime runs on CPU here, not {device.type}"
        if device.type != "cpu"
        else ""
    )
    if wanted == "onnxruntime" and why_not:
        raise ConfigError(f"backend onnxruntime: {why_not}")
    if wanted == "auto":
        return "torch" if why_not or test_dropout else "onnxruntime"
    return wanted


def has_test_dropout(nets: dict[str, nn.Module]) -> bool:
    """Whether any of ``nets`` keeps dropout on in eval mode (Pix2Pix's test-time noise)."""
    return any(isinstance(m, NoiseDropout) and m.at_test and m.p > 0
               for net in nets.values() for m in net.modules())  # fmt: skip


def intra_op_threads() -> int:
    """onnxruntime's intra-op threads: the CPUs Ray gave this actor or task (at least one,
    also for a fractional share), else torch's thread count (the CLI's, ``OMP_NUM_THREADS``).

    onnxruntime's own default is every core of the machine, which oversubscribes a node whose
    CPUs Ray has shared out between actors.
    """
    ray = sys.modules.get("ray")  # only where Ray is in use: importing it costs seconds
    if ray is not None and ray.is_initialized():
        from ray._private.worker import WORKER_MODE  # drivers are not given CPUs

        context = ray.get_runtime_context()
        if context.worker.mode == WORKER_MODE:
            return max(1, int(context.get_assigned_resources().get("CPU", 0)))
    return torch.get_num_threads()


class OnnxNet(nn.Module):
    """A checked graph run by onnxruntime on CPU, called like the network it was exported from:
    float (B, C, H, W) in, float32 out on the input's device.

    Inputs are padded to the network's ``stride`` and the output cropped back, as torch's
    forward does for image-to-image networks (:func:`genart.models.layers.forward_any_size`).
    A module without parameters, so that code written for the torch network (eval mode,
    ``no_grad``) runs it unchanged.
    """

    def __init__(self, graph: str, stride: int = 1, threads: int | None = None):
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or intra_op_threads()
        options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: spinning ones take cores from whatever
        # else runs (other replicas on the node, torch); on 2 cores it made 2-thread runs
        # bimodal, up to 1.7x slower, and bought nothing measurable.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads = options.intra_op_num_threads
        self.stride = stride
        self.session = onnxruntime.InferenceSession(
            storage.read_bytes(graph), options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        padded = pad_to_multiple(images.detach().float().cpu(), self.stride)
        (out,) = self.session.run(None, {self.input: padded.contiguous().numpy()})
        if padded.shape[-2:] != images.shape[-2:]:  # an image-to-image net: same size out
            out = out[..., :height, :width]
        return torch.from_numpy(out).to(images.device)


def onnx_nets(
    graphs: dict[str, str], nets: dict[str, nn.Module], threads: int | None = None
) -> dict[str, OnnxNet]:
    """An :class:`OnnxNet` per graph, padding to the stride of the network it replaces."""
    return {name: OnnxNet(graphs[name], stride_of(nets[name]), threads) for name in graphs}
