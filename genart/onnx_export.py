"""ONNX export of a generator, checked against PyTorch with onnxruntime before it is kept.

One helper for every model family (fast style transformer nets, Pix2Pix and CycleGAN
generators): a broken export must fail here, not in someone's serving stack.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from genart.registry import unwrap

TOLERANCE = 1e-4  # max |onnxruntime - torch| accepted


def export_checked(net: nn.Module, path: str | Path, sample: torch.Tensor) -> float:
    """Write ``net`` as ONNX with dynamic batch, height and width; returns max |ORT - torch|.

    The graph has one input ``image`` and one output ``output``, both (B, C, H, W) in [-1, 1].
    onnxruntime's output on ``sample`` is compared with PyTorch's; a difference above
    ``TOLERANCE`` raises ``AssertionError``.
    """
    import numpy as np
    import onnxruntime

    net = unwrap(net).eval()
    sample = sample.to(next(net.parameters()).device)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    # The TorchScript-based exporter: the dynamo one needs onnxscript, not a dependency here.
    # Its warnings are benign here (instance norm always uses the input's statistics and checks
    # its channel count, a constant; some Slice ops are not constant-folded) and would only
    # alarm users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            net,
            (sample,),
            str(path),
            input_names=["image"],
            output_names=["output"],
            dynamic_axes={"image": dynamic, "output": dynamic},
            dynamo=False,
        )
    with torch.no_grad():
        expected = net(sample).cpu().numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": sample.cpu().numpy()})
    diff = float(np.abs(got - expected).max())
    if diff > TOLERANCE:
        raise AssertionError(f"ONNX output differs from PyTorch by {diff:.2e} (> {TOLERANCE})")
    return diff
