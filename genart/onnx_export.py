"""ONNX export of a generator, checked against PyTorch with onnxruntime before it is kept.

One helper for every model family (fast style transformer nets, Pix2Pix and CycleGAN
generators, AdaIN's encoder + decoder): a broken export must fail here, not in someone's
serving stack.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from genart.registry import unwrap

TOLERANCE = 1e-4  # max |onnxruntime - torch| accepted


def export_checked(
    net: nn.Module, path: str | Path, sample: torch.Tensor | dict[str, torch.Tensor]
) -> float:
    """Write ``net`` as ONNX with dynamic batch, height and width; returns max |ORT - torch|.

    The graph has one input ``image`` and one output ``output``, both (B, C, H, W) in [-1, 1];
    a dict ``sample`` names several inputs instead (in ``net``'s argument order), each image
    input with its own dynamic height and width (other inputs, such as scalars, keep their
    shapes). onnxruntime's output on ``sample`` is compared with PyTorch's; a difference above
    ``TOLERANCE`` raises ``AssertionError``.
    """
    import numpy as np
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
