"""sign_ctc: continuous sign language recognition from MediaPipe landmarks with CTC.

The OmegaConf resolvers the configs use are registered by :mod:`sign_ctc.conf`, which Hydra imports
whenever it composes a config from the package; importing ``sign_ctc`` itself does no work.
"""

__version__ = "0.1.0"
__all__ = ["Recognizer"]


def __getattr__(name: str):
    """``from sign_ctc import Recognizer`` loads torch and the models on first use only: importing sign_ctc
    stays free (``sign-ctc-score`` runs where torch is not installed)."""
    if name == "Recognizer":
        from sign_ctc.api import Recognizer

        return Recognizer
    raise AttributeError(f"module 'sign_ctc' has no attribute {name!r}")
