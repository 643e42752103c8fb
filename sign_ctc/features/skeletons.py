"""Named points of every known skeleton, mapped into the 543-point Holistic layout.

A `.pose` header names its components and, in each, its points; this module says which point of
the layout (``layout.RAW_PARTS``: POSE 33 | FACE 468 | LEFT_HAND 21 | RIGHT_HAND 21) every known
name is, so a file is read by name and not by position. A point a file does not name stays missing
(the reader leaves it 0 and, when a part has no point at all, the part absent): nothing is invented.

Known families:

* **MediaPipe Holistic** (``POSE_LANDMARKS``, ``FACE_LANDMARKS``, ``LEFT_HAND_LANDMARKS``,
  ``RIGHT_HAND_LANDMARKS``; ``POSE_WORLD_LANDMARKS`` is ignored). Pose and hand points carry
  MediaPipe's landmark names, face points their mesh index as a string: the 478-point face of the
  refined-face graph and of the Tasks API keeps its first 468 points, the iris points 468-477 have
  no place in the layout. Any subset reads, so pose-format's ``reduce_holistic`` files (8 pose, 128
  face-contour points, both hands) and hands-only files are Holistic files with fewer names.
  "Left" is the person's left, in MediaPipe as in OpenPose.
* **OpenPose** (``pose_keypoints_2d`` BODY_25 or COCO-18, ``face_keypoints_2d`` 70,
  ``hand_left_keypoints_2d`` / ``hand_right_keypoints_2d`` 21, pose-format's point names). Body
  joints go to the MediaPipe pose point of the same body point; Neck, MidHip and the small toes
  have none. The hands have the same topology as MediaPipe's (wrist, then thumb, index, middle,
  ring and pinky, each from the palm out), so they map one to one. Of the 70 face points only
  those with a well-defined MediaPipe mesh counterpart are mapped (chin, nose bridge top, nose tip
  and base, the six points of each eye, the lip corners and lip mid-points, 24 in all); the other
  jaw, eyebrow and nose-wing points sit at positions the mesh does not share, and the pupils are
  iris points beyond the 468. OpenPose reports every hand point with a confidence, ~0.01 when no
  hand is there, so an OpenPose part counts as present only when the mean confidence of its
  located points reaches :data:`OPENPOSE_PART_MIN_CONFIDENCE` (see :class:`Skeleton`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sign_ctc.errors import SignCtcError
from sign_ctc.features.layout import NUM_POINTS, PARTS, RAW_PARTS

# MediaPipe's pose landmark names (mediapipe PoseLandmark, in index order).
MEDIAPIPE_POSE_POINTS: tuple[str, ...] = (
    "NOSE", "LEFT_EYE_INNER", "LEFT_EYE", "LEFT_EYE_OUTER", "RIGHT_EYE_INNER", "RIGHT_EYE",
    "RIGHT_EYE_OUTER", "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER",
    "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST", "LEFT_PINKY",
    "RIGHT_PINKY", "LEFT_INDEX", "RIGHT_INDEX", "LEFT_THUMB", "RIGHT_THUMB", "LEFT_HIP", "RIGHT_HIP",
    "LEFT_KNEE", "RIGHT_KNEE", "LEFT_ANKLE", "RIGHT_ANKLE", "LEFT_HEEL", "RIGHT_HEEL",
    "LEFT_FOOT_INDEX", "RIGHT_FOOT_INDEX",
)
# MediaPipe's hand landmark names (mediapipe HandLandmark, in index order).
MEDIAPIPE_HAND_POINTS: tuple[str, ...] = (
    "WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP",
    "INDEX_FINGER_MCP", "INDEX_FINGER_PIP", "INDEX_FINGER_DIP", "INDEX_FINGER_TIP",
    "MIDDLE_FINGER_MCP", "MIDDLE_FINGER_PIP", "MIDDLE_FINGER_DIP", "MIDDLE_FINGER_TIP",
    "RING_FINGER_MCP", "RING_FINGER_PIP", "RING_FINGER_DIP", "RING_FINGER_TIP",
    "PINKY_MCP", "PINKY_PIP", "PINKY_DIP", "PINKY_TIP",
)
FACE_MESH_POINTS = RAW_PARTS["face"][1] - RAW_PARTS["face"][0]  # 468: the layout's face

# pose-format's reduce_holistic keeps these pose points and the face-mesh contour points
# (the point set of MediaPipe's FACEMESH_CONTOURS); only used to name the family of a file.
REDUCED_POSE_POINTS = frozenset({"LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW",
                                 "LEFT_WRIST", "RIGHT_WRIST", "LEFT_HIP", "RIGHT_HIP"})
FACE_CONTOUR_POINTS = frozenset({
    0, 7, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80, 81,
    82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150,
    152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 172, 173, 176, 178, 181, 185, 191, 234, 246,
    249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310,
    311, 312, 314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377,
    378, 379, 380, 381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454,
    466,
})

# OpenPose body joint -> MediaPipe pose index of the same body point (BODY_25; COCO-18 is its first
# 18 joints less MidHip). The big toe is MediaPipe's foot index (the tip of the foot).
OPENPOSE_BODY_TO_MEDIAPIPE: dict[str, int] = {
    "Nose": 0, "LEye": 2, "REye": 5, "LEar": 7, "REar": 8,
    "LShoulder": 11, "RShoulder": 12, "LElbow": 13, "RElbow": 14, "LWrist": 15, "RWrist": 16,
    "LHip": 23, "RHip": 24, "LKnee": 25, "RKnee": 26, "LAnkle": 27, "RAnkle": 28,
    "LHeel": 29, "RHeel": 30, "LBigToe": 31, "RBigToe": 32,
}
OPENPOSE_BODY_UNMAPPED = frozenset({"Neck", "MidHip", "LSmallToe", "RSmallToe"})
BODY25_ONLY = frozenset({"MidHip", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"})
# pose-format's OpenPose hand names, in OpenPose's index order (= MediaPipe's hand index order).
OPENPOSE_HAND_POINTS: tuple[str, ...] = (
    "BASE", "T_STT", "T_BCMC", "T_MCP", "T_IP", "I_CMC", "I_MCP", "I_PIP", "I_DIP", "M_CMC", "M_MCP",
    "M_PIP", "M_DIP", "R_CMC", "R_MCP", "R_PIP", "R_DIP", "P_CMC", "P_MCP", "P_PIP", "P_DIP",
)
# OpenPose face (the 68-point face annotation + 2 pupils; point 36 is the person's right eye's outer
# corner) -> MediaPipe face-mesh index, only where both name the same landmark.
OPENPOSE_FACE_TO_MEDIAPIPE: dict[str, int] = {
    "FB_8": 152,                                  # chin
    "FN_27": 168, "FN_30": 1, "FN_33": 2,         # nose: bridge top (nasion), tip, base (subnasale)
    # right eye: outer corner, upper lid (outer, inner), inner corner, lower lid (inner, outer)
    "FE_36": 33, "FE_37": 160, "FE_38": 158, "FE_39": 133, "FE_40": 153, "FE_41": 144,
    # left eye: inner corner, upper lid (inner, outer), outer corner, lower lid (outer, inner)
    "FE_42": 362, "FE_43": 385, "FE_44": 387, "FE_45": 263, "FE_46": 373, "FE_47": 380,
    # lips: outer corners and mid-points, inner corners and mid-points
    "FLO_48": 61, "FLO_51": 0, "FLO_54": 291, "FLO_57": 17,
    "FLI_60": 78, "FLI_62": 13, "FLI_64": 308, "FLI_66": 14,
}
# OpenPose's detectors report a low confidence (~0.01) for every point of a hand that is not there; a
# real hand's points average 0.2-0.8 (pose-format's OpenPose test file: 0.01 in frames without the
# hand, 0.19-0.77 with it). A part is present when its located points' mean confidence reaches this.
OPENPOSE_PART_MIN_CONFIDENCE = 0.1

HOLISTIC = "mediapipe_holistic"
OPENPOSE = "openpose"


class SkeletonError(SignCtcError, ValueError):
    """A header whose components name no known skeleton (or mix two); the reader adds the file name."""


@dataclass(frozen=True)
class _Component:
    """How one named component of a header maps into the layout."""

    family: str
    part: str | None  # None: known but not read (world landmarks)
    points: dict[str, int] = field(default_factory=dict)  # point name -> layout index 0..542


def _part_map(part: str, names: Sequence[str]) -> dict[str, int]:
    start = RAW_PARTS[part][0]
    return {name: start + i for i, name in enumerate(names)}


def _face_mesh_map(count: int) -> dict[str, int]:
    return {str(i): RAW_PARTS["face"][0] + i for i in range(count)}


def _openpose_face_map() -> dict[str, int]:
    return {name: RAW_PARTS["face"][0] + i for name, i in OPENPOSE_FACE_TO_MEDIAPIPE.items()}


COMPONENTS: dict[str, _Component] = {
    "POSE_LANDMARKS": _Component(HOLISTIC, "pose", _part_map("pose", MEDIAPIPE_POSE_POINTS)),
    "FACE_LANDMARKS": _Component(HOLISTIC, "face", _face_mesh_map(FACE_MESH_POINTS)),
    "LEFT_HAND_LANDMARKS": _Component(HOLISTIC, "left_hand", _part_map("left_hand", MEDIAPIPE_HAND_POINTS)),
    "RIGHT_HAND_LANDMARKS": _Component(HOLISTIC, "right_hand", _part_map("right_hand", MEDIAPIPE_HAND_POINTS)),
    "POSE_WORLD_LANDMARKS": _Component(HOLISTIC, None),
    "pose_keypoints_2d": _Component(OPENPOSE, "pose", {n: RAW_PARTS["pose"][0] + i
                                                       for n, i in OPENPOSE_BODY_TO_MEDIAPIPE.items()}),
    "face_keypoints_2d": _Component(OPENPOSE, "face", _openpose_face_map()),
    "hand_left_keypoints_2d": _Component(OPENPOSE, "left_hand", _part_map("left_hand", OPENPOSE_HAND_POINTS)),
    "hand_right_keypoints_2d": _Component(OPENPOSE, "right_hand", _part_map("right_hand", OPENPOSE_HAND_POINTS)),
}
PART_MIN_CONFIDENCE = {HOLISTIC: 0.0, OPENPOSE: OPENPOSE_PART_MIN_CONFIDENCE}


@dataclass(frozen=True, eq=False)
class Skeleton:
    """A header resolved against the layout: which of the file's points go where.

    ``source_index[i]`` (a point of the file, counted over all components in header order) is layout
    point ``layout_index[i]``. ``name`` says what the file was read as: ``mediapipe_holistic`` (every
    layout point named), ``mediapipe_holistic_reduced`` (pose-format's ``reduce_holistic`` point set),
    ``mediapipe_hands`` (hand components only), ``mediapipe_holistic_partial`` (any other subset),
    ``openpose_body25`` / ``openpose_coco18`` (by the body joints named), ``openpose`` (no body).
    ``part_min_confidence``: a part is present in a frame only when the mean confidence of its located
    points reaches it (0 for MediaPipe, whose confidence is 0 exactly where a part was not found).
    """

    name: str
    family: str
    source_index: np.ndarray
    layout_index: np.ndarray
    part_min_confidence: float

    @functools.cached_property
    def source_slice(self) -> slice | None:
        """``source_index`` as a slice when it is one contiguous run (a full Holistic file): a view, not a copy."""
        return _as_slice(self.source_index)

    @functools.cached_property
    def layout_slice(self) -> slice | None:
        return _as_slice(self.layout_index)

    @property
    def available(self) -> np.ndarray:
        """bool [543]: the layout points this skeleton has (the rest are always missing)."""
        out = np.zeros(NUM_POINTS, dtype=bool)
        out[self.layout_index] = True
        return out

    def part_columns(self, part: str) -> np.ndarray | slice:
        """Positions in ``source_index`` / ``layout_index`` of the points that belong to ``part`` (a slice
        when they are one run; empty when the skeleton has none, see :attr:`coverage`)."""
        return self._part_columns[part]

    @functools.cached_property
    def _part_columns(self) -> dict[str, np.ndarray | slice]:
        out: dict[str, np.ndarray | slice] = {}
        for part, (lo, hi) in RAW_PARTS.items():
            cols = np.flatnonzero((self.layout_index >= lo) & (self.layout_index < hi))
            out[part] = _as_slice(cols) or cols
        return out

    @functools.cached_property
    def coverage(self) -> dict[str, int]:
        """Points of each part (layout.PARTS order) that this skeleton has."""
        return {part: int(self.available[slice(*RAW_PARTS[part])].sum()) for part in PARTS}


def _as_slice(index: np.ndarray) -> slice | None:
    if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        return slice(int(index[0]), int(index[0]) + index.size)
    return None


def describe(components: Sequence[tuple[str, Sequence[str]]]) -> str:
    """``NAME(points), ...``: a header's components as error messages show them."""
    return ", ".join(f"{name}({len(points)})" for name, points in components) or "no components"


def resolve(components: Sequence[tuple[str, Sequence[str]]]) -> Skeleton:
    """Map a header's ``(component name, point names)`` list to the layout, or raise :class:`SkeletonError`.

    Unknown components (and unknown point names inside a known one) are skipped; a header with no
    known component, with components of two families, or with a known component none of whose
    points has a place in the layout is refused. Cached: a corpus has one header over and over.
    """
    return _resolve(tuple((str(name), tuple(map(str, points))) for name, points in components))


@functools.lru_cache(maxsize=64)
def _resolve(components: tuple[tuple[str, tuple[str, ...]], ...]) -> Skeleton:
    families = {COMPONENTS[name].family for name, _ in components if name in COMPONENTS}
    if not families:
        raise SkeletonError(
            f"no known skeleton in the header: it has {describe(components)}; readable are MediaPipe "
            f"Holistic ({', '.join(n for n, c in COMPONENTS.items() if c.family == HOLISTIC)}) and OpenPose "
            f"({', '.join(n for n, c in COMPONENTS.items() if c.family == OPENPOSE)}) components"
        )
    if len(families) > 1:
        raise SkeletonError(f"the header mixes MediaPipe Holistic and OpenPose components: {describe(components)}")
    family = families.pop()
    source: list[int] = []
    layout: list[int] = []
    names: dict[str, set[str]] = {}
    taken: set[int] = set()  # a layout point is read from the first point that names it
    offset = 0
    for name, points in components:
        comp = COMPONENTS.get(name)
        if comp is not None and comp.part is not None:
            mapped = 0
            for i, point in enumerate(points):
                target = comp.points.get(str(point))
                if target is not None:
                    mapped += 1
                    if target not in taken:
                        taken.add(target)
                        source.append(offset + i)
                        layout.append(target)
            if not mapped:
                raise SkeletonError(f"component {name} names none of the points of its skeleton "
                                    f"(first names: {', '.join(map(str, points[:5])) or 'none'})")
            names.setdefault(comp.part, set()).update(map(str, points))
        offset += len(points)
    if not source:
        raise SkeletonError(f"no point of the header has a place in the layout: it has {describe(components)}")
    source_index = np.asarray(source, dtype=np.int64)
    layout_index = np.asarray(layout, dtype=np.int64)
    source_index.flags.writeable = layout_index.flags.writeable = False  # shared by every file with this header
    complete = len(taken) == NUM_POINTS
    return Skeleton(_name(family, complete, names), family, source_index, layout_index, PART_MIN_CONFIDENCE[family])


def _name(family: str, complete: bool, names: dict[str, set[str]]) -> str:
    """The variant a resolved header is (see :class:`Skeleton`); ``names``: the point names per part."""
    if family == OPENPOSE:
        body = names.get("pose")
        if body is None:
            return "openpose"
        return "openpose_body25" if body & BODY25_ONLY else "openpose_coco18"
    if complete:
        return "mediapipe_holistic"
    if set(names) <= {"left_hand", "right_hand"}:
        return "mediapipe_hands"
    face = {int(n) for n in names.get("face", ()) if n.isdigit()}
    if names.get("pose") == REDUCED_POSE_POINTS and face == FACE_CONTOUR_POINTS:
        return "mediapipe_holistic_reduced"
    return "mediapipe_holistic_partial"
