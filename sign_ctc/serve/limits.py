"""What the server accepts from a page, and how a message becomes frames: one place for the limits.

The page sends binary WebSocket messages whose first byte says what follows:

- ``F`` + an encoded image (JPEG, PNG or WebP): one video frame, tracked on the server;
- ``D`` alone: a frame the page shown but did not send (the server was ``max_lag_frames`` behind): its
  place in the stream is kept by the last landmarks;
- ``L`` + ``k`` frames of landmarks: float32 little-endian ``[k, 543, 3]`` (unit image coordinates, 0
  where undetected) then uint8 ``[k, 4]`` part presence (pose, left hand, right hand, face), as the
  extractor and the store give them (a client that tracks on its own side, and the tests);

and text messages with JSON control commands: ``{"type": "hello", "fps": 30}`` (the frame rate, before
the first frame), ``{"type": "end"}`` (the stream ended: every gloss committed, then a fresh stream),
``{"type": "clear"}`` (forget the stream). Nothing names a file: the page never gives the server a path.
A message that breaks a rule raises :class:`MessageError`, whose text goes back to that client only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from sign_ctc.errors import SignCtcError
from sign_ctc.features.layout import NUM_POINTS

FRAME, LANDMARKS, DROPPED = ord("F"), ord("L"), ord("D")
POINT_BYTES = NUM_POINTS * 3 * 4  # float32 [543, 3]
PRESENCE_BYTES = 4
COMMANDS = ("hello", "end", "clear")


class MessageError(SignCtcError, ValueError):
    """A message the server refuses; the text says what was wrong (sent to that client only)."""


@dataclass(frozen=True)
class Limits:
    """``max_message_bytes``: the largest message read (a bigger one is refused with an error);
    ``max_pixels``: the largest decoded frame; ``max_landmark_frames``: frames in one landmarks message;
    ``max_lag_frames``: camera frames waiting for the tracker before the oldest are dropped (their place
    kept by the last landmarks, so times stay true)."""

    max_message_bytes: int = 2 * 1024 * 1024
    max_pixels: int = 1920 * 1080
    max_landmark_frames: int = 256
    max_lag_frames: int = 8
    min_fps: float = 1.0
    max_fps: float = 120.0

    def __post_init__(self) -> None:
        # OpenCV refuses to decode an image above this many pixels (read when it first decodes):
        # a small compressed message cannot expand into gigabytes.
        os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(self.max_pixels))


def check_size(size: int, limits: Limits) -> None:
    if size > limits.max_message_bytes:
        raise MessageError(f"message of {size} bytes refused: the limit is {limits.max_message_bytes} bytes")


def parse_command(text: str, limits: Limits) -> dict[str, Any]:
    """A JSON control message (see the module docstring), checked."""
    check_size(len(text.encode("utf-8")), limits)
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as err:
        raise MessageError(f"text message is not JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(msg, dict) or msg.get("type") not in COMMANDS:
        raise MessageError(f"text message must be a JSON object with type one of {', '.join(COMMANDS)}")
    if msg["type"] == "hello":
        fps = msg.get("fps")
        if fps is not None and (not isinstance(fps, (int, float)) or isinstance(fps, bool) or not np.isfinite(fps)
                                or not limits.min_fps <= fps <= limits.max_fps):
            raise MessageError(f"hello: fps must be a number from {limits.min_fps:g} to {limits.max_fps:g}, got {fps!r}")
    return msg


def parse_landmarks(payload: bytes, limits: Limits) -> tuple[np.ndarray, np.ndarray]:
    """``(points [k, 543, 3] float32, presence [k, 4] bool)`` of an ``L`` message's payload."""
    per_frame = POINT_BYTES + PRESENCE_BYTES
    if not payload or len(payload) % per_frame:
        raise MessageError(f"landmarks message of {len(payload)} bytes: expected k * {per_frame} bytes "
                           f"(float32 [k, {NUM_POINTS}, 3] then uint8 [k, 4])")
    k = len(payload) // per_frame
    if k > limits.max_landmark_frames:
        raise MessageError(f"landmarks message of {k} frames: at most {limits.max_landmark_frames} in one message")
    points = np.frombuffer(payload, dtype="<f4", count=k * NUM_POINTS * 3).reshape(k, NUM_POINTS, 3)
    presence = np.frombuffer(payload, dtype=np.uint8, offset=k * POINT_BYTES).reshape(k, 4)
    if not np.isfinite(points).all():
        raise MessageError("landmarks message holds NaN or infinite coordinates (undetected points are 0)")
    if (presence > 1).any():
        raise MessageError("landmarks message: presence bytes must be 0 or 1")
    return points.astype(np.float32), presence.astype(bool)


def decode_frame(payload: bytes, limits: Limits) -> np.ndarray:
    """An ``F`` message's image as RGB ``uint8 [H, W, 3]``."""
    import cv2

    image = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_COLOR) if payload else None
    if image is None or image.size == 0:
        raise MessageError(f"frame of {len(payload)} bytes could not be decoded as an image (send JPEG, PNG or "
                           f"WebP, at most {limits.max_pixels} pixels)")
    if image.shape[0] * image.shape[1] > limits.max_pixels:
        raise MessageError(f"frame of {image.shape[1]}x{image.shape[0]} pixels: at most {limits.max_pixels}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
