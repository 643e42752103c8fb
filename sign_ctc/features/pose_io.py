"""Reading and writing `.pose` files (pose-format) as :class:`Landmarks`.

Accepts pose-format's Holistic files with 543 points, 576 with POSE_WORLD_LANDMARKS and 586
with a refined (478-point) face: world landmarks are dropped, the first 468 face points kept,
pixel coordinates divided by the header's width/height. A point is missing where it is masked,
has confidence 0 or has a non-finite (NaN/inf) coordinate: missing points read as 0, and a part is
present in a frame when any of its points is. Non-finite coordinates are counted (see
:func:`read_pose_counted`) so that the store can report the files that had them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from sign_ctc.atomic import write_bytes_atomic
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.features.layout import NUM_POINTS, PARTS, RAW_PARTS

COMPONENTS: dict[str, str] = {
    "pose": "POSE_LANDMARKS",
    "face": "FACE_LANDMARKS",
    "left_hand": "LEFT_HAND_LANDMARKS",
    "right_hand": "RIGHT_HAND_LANDMARKS",
}
WORLD_COMPONENT = "POSE_WORLD_LANDMARKS"


class PoseFileError(ValueError):
    """A `.pose` file that cannot be turned into Holistic landmarks; the message names it."""


def read_pose(path: str | os.PathLike) -> Landmarks:
    """Load a Holistic `.pose` file as unit-coordinate landmarks with part presence."""
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
    """Convert a pose-format ``Pose`` (Holistic) to :class:`Landmarks`."""
    return _convert(pose, source)[0]


def _convert(pose, source: str) -> tuple[Landmarks, int]:
    """Landmarks of a ``Pose`` and the number of detected points whose coordinates were not finite."""
    header = pose.header
    offsets: dict[str, tuple[int, int]] = {}
    start = 0
    for comp in header.components:
        offsets[comp.name] = (start, len(comp.points))
        start += len(comp.points)
    missing = [name for name in COMPONENTS.values() if name not in offsets]
    if missing:
        have = ", ".join(f"{c.name}({len(c.points)})" for c in header.components)
        raise PoseFileError(
            f"{source}: missing required MediaPipe Holistic component(s) {', '.join(missing)}; "
            f"file has {have}"
        )
    data = np.asarray(pose.body.data)
    if data.ndim != 4 or data.shape[-1] < 2:
        raise PoseFileError(f"{source}: unexpected body shape {data.shape}, want [frames, people, points, dims]")
    frames = data.shape[0]
    conf = np.asarray(pose.body.confidence)
    mask = np.ma.getmaskarray(pose.body.data)
    points = np.zeros((frames, NUM_POINTS, 3), dtype=np.float32)
    point_ok = np.zeros((frames, NUM_POINTS), dtype=bool)
    nonfinite = 0
    for part, name in COMPONENTS.items():
        lo, hi = RAW_PARTS[part]
        need = hi - lo
        off, count = offsets[name]
        if count < need:
            raise PoseFileError(f"{source}: component {name} has {count} points, need at least {need}")
        sl = slice(off, off + need)
        dims = min(3, data.shape[-1])
        if frames:
            points[:, lo:hi, :dims] = np.where(mask[:, 0, sl, :dims], 0.0, data[:, 0, sl, :dims])
            detected = (conf[:, 0, sl] > 0) & ~mask[:, 0, sl, :].any(-1)
            # A NaN/inf coordinate (a broken extraction) is a missing point, like a masked one.
            finite = np.isfinite(points[:, lo:hi]).all(-1)
            nonfinite += int((detected & ~finite).sum())
            point_ok[:, lo:hi] = detected & finite
    width, height = header.dimensions.width, header.dimensions.height
    if width <= 0 or height <= 0:
        raise PoseFileError(f"{source}: header dimensions {width}x{height} are not usable to normalize pixels")
    points[..., 0] /= width
    points[..., 1] /= height
    points[~point_ok] = 0.0
    presence = np.stack([point_ok[:, slice(*RAW_PARTS[p])].any(-1) for p in PARTS], axis=-1)
    return Landmarks(points=points, presence=presence, fps=float(pose.body.fps)), nonfinite


def holistic_header(width: int, height: int, world: bool = False, refined_face: bool = False):
    """pose-format's own Holistic header, so our files match `video_to_pose` output."""
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions
    from pose_format.utils.holistic import holistic_components  # imports mediapipe: lazy

    components = holistic_components(additional_face_points=10 if refined_face else 0)
    if not world:
        components = [c for c in components if c.name != WORLD_COMPONENT]
    return PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
                      components=components)


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
    return Pose(holistic_header(width, height), body)


def write_pose_atomic(pose, path: str | os.PathLike) -> None:
    """Write a ``Pose`` to `path` through a temp file + rename: never a half-written file."""
    buf = io.BytesIO()
    pose.write(buf)
    write_bytes_atomic(Path(path), buf.getvalue())
