"""sign_ctc: continuous sign language recognition from MediaPipe landmarks with CTC."""

__version__ = "0.1.0"
