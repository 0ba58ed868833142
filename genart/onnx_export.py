"""ONNX graphs of an export's networks, checked against PyTorch with onnxruntime before they are
kept, and the onnxruntime backend that runs them.

An export (``genart export``) carries ``<net>.onnx`` beside each ``<net>.pt`` (fast style's and
Pix2Pix's ``G``, CycleGAN's ``G_AB`` and ``G_BA``, AdaIN's ``decoder``), with dynamic batch,
height and width; its manifest (:mod:`genart.export`) lists them under ``onnx``. A graph whose
outputs differ from torch's is not kept, and the manifest says why under ``onnx_error``: the
export still runs on torch. A broken graph must fail here, not in someone's serving stack.

Pipelines pick their backend with :func:`choose_backend`: ``auto`` runs onnxruntime on CPU where
the export has checked graphs (the same networks, faster on CPU), torch on a GPU.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from genart import storage
from genart.errors import ConfigError
from genart.models.layers import NoiseDropout, pad_to_multiple, stride_of, without_test_dropout
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
    onnxruntime's output on ``sample`` is compared with PyTorch's; a difference above
    ``TOLERANCE`` raises ``AssertionError``.
    """
    import onnxruntime

    net = unwrap(net).eval()
    device = next(net.parameters()).device
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
            net,
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=["output"],
            dynamic_axes=dynamic,
            dynamo=False,
        )
    with torch.no_grad():
        expected = net(*inputs.values()).cpu().numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {name: value.cpu().numpy() for name, value in inputs.items()})
    diff = float(np.abs(got - expected).max())
    if diff > TOLERANCE:
        raise AssertionError(f"ONNX output differs from PyTorch by {diff:.2e} (> {TOLERANCE})")
    return diff


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
