"""The Holistic `.pose` header that every file we write carries, with or without mediapipe's legacy module.

pose-format builds its Holistic header (point names, limbs, colours) from ``mp.solutions.holistic``,
so it cannot be built where mediapipe >= 0.10.30 is installed: where the Tasks backend runs, and on
Python 3.13, which has no older mediapipe wheel. The header is a fixed fact of the Holistic topology,
so a copy written by pose-format with mediapipe 0.10.21 ships beside this module
(``holistic_header.bin``: world landmarks and the 478-point face, frame size 1x1); the 468-point
variant is the same without the 10 iris points and their limbs, the variant without world landmarks
the same without that component. Extraction (both backends) and the synthetic corpus therefore write
the same header everywhere, and tests check the copy against pose-format's own wherever pose-format
can build it. Regenerate with ``python -m sign_ctc.features.header`` (needs mediapipe < 0.10.30).
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

TEMPLATE = Path(__file__).with_name("holistic_header.bin")
FACE = "FACE_LANDMARKS"
WORLD = "POSE_WORLD_LANDMARKS"
FACE_POINTS = 468


def _from_pose_format(width: int, height: int, refined_face: bool, world: bool = True):
    """pose-format's own header (imports mediapipe's legacy module: lazy)."""
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions
    from pose_format.utils.holistic import holistic_components

    components = holistic_components(additional_face_points=10 if refined_face else 0)
    if not world:
        components = [c for c in components if c.name != WORLD]
    return PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
                      components=components)


def _from_template(width: int, height: int, refined_face: bool, world: bool = True):
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions
    from pose_format.utils.reader import BufferReader

    stored = PoseHeader.read(BufferReader(TEMPLATE.read_bytes()))  # pose-format caches it: copy before editing
    components = [c for c in copy.deepcopy(stored.components) if world or c.name != WORLD]
    if not refined_face:
        for comp in components:
            if comp.name == FACE:
                comp.points = comp.points[:FACE_POINTS]
                comp.limbs = [(a, b) for a, b in comp.limbs if a < FACE_POINTS and b < FACE_POINTS]
    return PoseHeader(version=stored.version, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
                      components=components)


def holistic_header(width: int, height: int, world: bool = False, refined_face: bool = False):
    """pose-format's Holistic header (``world``: with POSE_WORLD_LANDMARKS, as ``video_to_pose`` writes it),
    from pose-format where it can build it, else from the recorded copy."""
    try:
        return _from_pose_format(width, height, refined_face, world)
    except (ImportError, AttributeError):  # pose_format.utils.holistic needs mp.solutions (mediapipe < 0.10.30)
        return _from_template(width, height, refined_face, world)


def extraction_header(width: int, height: int, refined_face: bool = False):
    """The header of an extracted file: with POSE_WORLD_LANDMARKS."""
    return holistic_header(width, height, world=True, refined_face=refined_face)


def header_bytes(header) -> bytes:
    buf = io.BytesIO()
    header.write(buf)
    return buf.getvalue()


if __name__ == "__main__":
    from sign_ctc.atomic import write_bytes_atomic

    write_bytes_atomic(TEMPLATE, header_bytes(_from_pose_format(1, 1, refined_face=True)))
    print(f"wrote {TEMPLATE} ({TEMPLATE.stat().st_size} bytes)")
