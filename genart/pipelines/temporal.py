"""Temporal smoothing of stylised video: blend each output with the previous one where the
input stayed still, and measure flicker.

A feed-forward network stylises each frame on its own, so the sensor noise of a still scene
comes out as flicker. Each output is blended with the previous output, weight ``strength``,
but only where the *input* stayed still since the previous input frame (:func:`stillness`);
where the input moved, the new frame is taken as it is, so motion does not leave ghosts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image, ImageFilter

from genart.errors import InputError

# Stillness is judged on the luma of 4x4-pixel block means (averaging 16 pixels quarters the
# std of sensor noise), after a 3x3-block max filter so a moving edge also marks its
# neighbourhood; a block whose mean changed this many grey levels or more counts as moving.
POOL = 4
MOTION_THRESHOLD = 8.0

# --- temporal smoothing --------------------------------------------------------------------------


def stillness(
    previous: np.ndarray, current: np.ndarray, threshold: float = MOTION_THRESHOLD
) -> np.ndarray:
    """How still each pixel of ``current`` stayed since ``previous`` (uint8 RGB frames of one
    size): uint8 (H, W), 255 where nothing changed, 0 where the input moved (see ``POOL``)."""
    height, width = current.shape[:2]
    luma = [np.asarray(Image.fromarray(f).convert("L").reduce(POOL), np.float32)
            for f in (previous, current)]  # fmt: skip
    change = Image.fromarray(np.abs(luma[1] - luma[0]), mode="F").filter(ImageFilter.MaxFilter(3))
    still = np.clip(1 - np.asarray(change) / threshold, 0, 1) * 255
    grid = Image.fromarray(np.rint(still).astype(np.uint8))
    return np.asarray(grid.resize((width, height), Image.Resampling.BILINEAR))


def stillnesses(
    frames: Iterable[np.ndarray],
    previous: np.ndarray | None = None,
    threshold: float = MOTION_THRESHOLD,
) -> Iterator[np.ndarray]:
    """The :func:`stillness` of each frame since the one before it (``previous`` before the
    first; if None, the first frame is not still anywhere)."""
    for frame in frames:
        if previous is None:
            yield np.zeros(frame.shape[:2], np.uint8)
        else:
            yield stillness(previous, frame, threshold)
        previous = frame


def blend(previous: np.ndarray, styled: np.ndarray, still: np.ndarray, strength: float):
    """``styled`` moved towards the ``previous`` output by ``strength`` x stillness (float32)."""
    weight = (strength / 255) * still[..., None].astype(np.float32)
    return styled + weight * (previous - styled)


class TemporalSmoother:
    """Blends each output frame with the previous (unrounded) one where the input was still."""

    def __init__(self, strength: float):
        if not 0 <= strength < 1:
            raise InputError(f"smoothing strength must be in [0, 1), got {strength}")
        self.strength = strength
        self.previous: np.ndarray | None = None

    def __call__(self, styled: np.ndarray, still: np.ndarray) -> np.ndarray:
        """The uint8 frame to write for ``styled`` given its input's :func:`stillness`."""
        current = styled.astype(np.float32)
        if self.previous is not None:
            current = blend(self.previous, current, still, self.strength)
        self.previous = current
        return np.rint(current).clip(0, 255).astype(np.uint8)


def smooth(
    inputs: Iterable[np.ndarray],
    outputs: Iterable[np.ndarray],
    strength: float,
    threshold: float = MOTION_THRESHOLD,
) -> list[np.ndarray]:
    """The frames a job smoothing by ``strength`` writes for a clip's ``inputs`` and their
    stylised ``outputs``, computed in one process (a job splits the work between its decode
    task and its driver)."""
    smoother = TemporalSmoother(strength)
    stills = stillnesses(inputs, threshold=threshold)
    return [smoother(output, still) for output, still in zip(outputs, stills)]


def flicker(frames: Iterable[np.ndarray]) -> float:
    """Mean absolute difference between consecutive frames, in grey levels."""
    diffs, previous = [], None
    for frame in frames:
        current = frame.astype(np.float32)
        if previous is not None:
            diffs.append(float(np.abs(current - previous).mean()))
        previous = current
    return float(np.mean(diffs))
