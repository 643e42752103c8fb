"""RGB frames of one sentence, from a video (cv2) or a folder of images, in natural order.

cv2 is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sign_ctc.errors import SignCtcError
from sign_ctc.extraction.discover import IMAGE_EXTENSIONS


class FrameSourceError(SignCtcError, RuntimeError):
    """A video or frame folder that yields no usable frames; the message says why."""


def natural_key(text: str) -> list[Any]:
    """Sort ``img2`` before ``img10``: frame file names are not always zero-padded."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", text)]


def rgb_video_frames(path: str) -> tuple[Iterator[np.ndarray], float, int]:
    """RGB frames of a video via cv2, its fps, and the frame count its header declares."""
    import cv2

    if not Path(path).is_file():
        raise FrameSourceError(f"video not found: {path}")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise FrameSourceError("cannot open video (not a video or unsupported codec)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    return frames(), fps, declared


def frame_files(patterns: Sequence[str]) -> list[str]:
    for pattern in patterns:
        files = [p for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
        if files:
            return sorted(files, key=natural_key)
    raise FrameSourceError(f"no frame images match {' or '.join(patterns)}")


def rgb_image_frames(files: Sequence[str]) -> Iterator[np.ndarray]:
    import cv2

    for file in files:
        bgr = cv2.imread(file, cv2.IMREAD_COLOR)
        if bgr is None:
            raise FrameSourceError(f"cannot read image {file}")
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
