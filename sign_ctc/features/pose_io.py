"""Reading and writing `.pose` files (pose-format) as :class:`Landmarks`.

Reads any file whose header names the points of a known skeleton (:mod:`sign_ctc.features.skeletons`:
MediaPipe Holistic in all its variants -- 543, 576 with POSE_WORLD_LANDMARKS, 586 with a 478-point
face, pose-format's reduced Holistic, hands only -- and OpenPose BODY_25 / COCO-18 with hands and
face): every named point goes to its place in the 543-point layout, pixel x / y divided by the
header's width / height (z kept as stored; 0 for 2-D files). A point is missing where the file does
not have it, where it is masked, has confidence 0 or a non-finite (NaN/inf) coordinate: missing
points read as 0. A part is present in a frame when any of its points is (for OpenPose, also only
when its points' mean confidence reaches ``skeletons.OPENPOSE_PART_MIN_CONFIDENCE``); a part the
skeleton has no point of is absent in every frame. Inside a present part, the points a skeleton
lacks (the reduced face's 340 non-contour points, say) read 0 like undetected ones: the presence
mask is per part, and the layout's 0 is "no value", never an estimate. ``Landmarks.skeleton`` names
what the file was read as. Non-finite coordinates are counted (see :func:`read_pose_counted`) so
that the store can report the files that had them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from sign_ctc.atomic import write_bytes_atomic
from sign_ctc.errors import SignCtcError
from sign_ctc.features import skeletons
from sign_ctc.features.header import holistic_header
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.layout import NUM_POINTS, PARTS, RAW_PARTS


class PoseFileError(SignCtcError, ValueError):
    """A `.pose` file that cannot be turned into layout landmarks; the message names it."""


def read_pose(path: str | os.PathLike) -> Landmarks:
    """Load a `.pose` file of any known skeleton as unit-coordinate landmarks with part presence."""
    return read_pose_counted(path)[0]


def read_pose_counted(path: str | os.PathLike) -> tuple[Landmarks, int]:
    """:func:`read_pose` plus how many detected points had a non-finite coordinate (read as missing).

    The count lets the packer name the files with such points instead of failing on them.
    """
    from pose_format import Pose

    path = Path(path)
    try:
        payload = path.read_bytes()
    except FileNotFoundError as exc:
        raise PoseFileError(f"{path}: file not found") from exc
    except OSError as exc:
        raise PoseFileError(f"{path}: cannot be read ({type(exc).__name__}: {exc.strerror or exc})") from exc
    if not payload:
        raise PoseFileError(f"{path}: empty file (0 bytes)")
    try:
        pose = Pose.read(payload)
    except Exception as exc:  # pose-format raises assorted errors on truncated files
        raise PoseFileError(f"{path}: not a readable .pose file ({type(exc).__name__}: {exc})") from exc
    return _convert(pose, str(path))


def landmarks_from_pose(pose, source: str = "<pose>") -> Landmarks:
    """Convert a pose-format ``Pose`` of any known skeleton to :class:`Landmarks`."""
    return _convert(pose, source)[0]


def _convert(pose, source: str) -> tuple[Landmarks, int]:
    """Landmarks of a ``Pose`` and the number of detected points whose coordinates were not finite."""
    header = pose.header
    try:
        skeleton = skeletons.resolve([(c.name, list(c.points)) for c in header.components])
    except skeletons.SkeletonError as exc:
        raise PoseFileError(f"{source}: {exc}") from None
    data = np.asarray(pose.body.data)
    if data.ndim != 4 or data.shape[-1] < 2:
        raise PoseFileError(f"{source}: unexpected body shape {data.shape}, want [frames, people, points, dims]")
    named = sum(len(c.points) for c in header.components)
    if data.shape[2] != named:
        raise PoseFileError(f"{source}: the body has {data.shape[2]} points per frame but the header names {named} "
                            f"({skeletons.describe([(c.name, c.points) for c in header.components])})")
    width, height = header.dimensions.width, header.dimensions.height
    if width <= 0 or height <= 0:
        raise PoseFileError(f"{source}: header dimensions {width}x{height} are not usable to normalize pixels")
    frames = data.shape[0]
    dims = min(3, data.shape[-1])
    src = skeleton.source_slice or skeleton.source_index  # a slice (full Holistic) reads views, not copies
    conf = np.asarray(pose.body.confidence)[:, 0, src] if frames else np.zeros((0, skeleton.source_index.size))
    masked = np.ma.getmaskarray(pose.body.data)[:, 0, src, :].any(-1)
    values = np.where(masked[..., None], np.float32(0.0), data[:, 0, src, :dims]).astype(np.float32, copy=False)
    located = (conf > 0) & ~masked
    # A NaN/inf coordinate (a broken extraction) is a missing point, like a masked one.
    finite = np.isfinite(values).all(-1)
    nonfinite = int((located & ~finite).sum())
    point_ok = located & finite
    presence = np.zeros((frames, len(PARTS)), dtype=bool)
    for i, part in enumerate(PARTS):
        cols = skeleton.part_columns(part)
        if not skeleton.coverage[part]:
            continue  # the skeleton has no point of this part: absent in every frame
        present = point_ok[:, cols].any(-1)
        if skeleton.part_min_confidence > 0:
            found = located[:, cols]
            mean = np.where(found, conf[:, cols], 0.0).sum(-1) / np.maximum(found.sum(-1), 1)
            present &= mean >= skeleton.part_min_confidence
        presence[:, i] = present
        point_ok[:, cols] &= present[:, None]
    values[~point_ok] = 0.0
    values[..., 0] /= width
    values[..., 1] /= height
    points = np.zeros((frames, NUM_POINTS, 3), dtype=np.float32)
    points[:, skeleton.layout_slice or skeleton.layout_index, :dims] = values
    return Landmarks(points=points, presence=presence, fps=float(pose.body.fps), skeleton=skeleton.name), nonfinite


def pose_from_landmarks(lm: Landmarks, width: int, height: int):
    """Build a pose-format ``Pose`` (543 points, pixel x/y) from unit-coordinate landmarks."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody

    frames = len(lm)
    data = lm.points.astype(np.float32).copy()
    data[..., 0] *= width
    data[..., 1] *= height
    conf = np.zeros((frames, NUM_POINTS), dtype=np.float32)
    for i, part in enumerate(PARTS):
        conf[:, slice(*RAW_PARTS[part])] = lm.presence[:, i : i + 1]
    mask = np.repeat((conf == 0)[..., None], 3, axis=-1)
    body = NumPyPoseBody(fps=lm.fps, data=np.ma.masked_array(data[:, None], mask=mask[:, None]),
                         confidence=conf[:, None])
    return Pose(holistic_header(width, height), body)  # pose-format's, or its recorded copy without mp.solutions


def write_pose_atomic(pose, path: str | os.PathLike) -> None:
    """Write a ``Pose`` to `path` through a temp file + rename: never a half-written file."""
    buf = io.BytesIO()
    pose.write(buf)
    write_bytes_atomic(Path(path), buf.getvalue())
