"""sign_ctc: continuous sign language recognition from MediaPipe landmarks with CTC.

The OmegaConf resolvers the configs use are registered by :mod:`sign_ctc.conf`, which Hydra imports
whenever it composes a config from the package; importing ``sign_ctc`` itself does no work.
"""

__version__ = "0.1.0"
