"""Recognition from Python (notebooks, other programs): what ``sign-ctc-predict`` does, as an object.

    from sign_ctc import Recognizer

    recognizer = Recognizer.from_checkpoint("outputs/train/runs/<run>/checkpoints/best.ckpt")
    result = recognizer.predict(video="clip.mp4")        # or pose="clip.pose"
    result.glosses                                       # ['HELLO', 'YOU']
    [(g.gloss, g.start, g.end) for g in result.spans]    # seconds in the input

A checkpoint brings everything inference needs (vocabulary, normalization statistics, missing-landmark
mode); a model exported by ``sign-ctc-export`` brings it in its JSON (:meth:`Recognizer.from_exported`).
Each gloss's time comes from the CTC forced alignment of the decoded sequence to the model's output
(:mod:`sign_ctc.decoding.alignment`): the input frames its output frames stand for, at the input's
frame rate. ``sign-ctc-predict`` is a thin command around this class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sign_ctc.data.vocabulary import Vocabulary
from sign_ctc.decoding.alignment import align_sequence
from sign_ctc.decoding.timed import TimedGloss
from sign_ctc.errors import ConfigError
from sign_ctc.features.landmarks import Landmarks
from sign_ctc.models.inference import decode, forward_landmarks, model_inputs, segments, without_idle

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from omegaconf import DictConfig


@dataclass(frozen=True)
class Prediction:
    """The glosses of one input (a video, a frame folder or a ``.pose`` file) with their times."""

    id: str
    frames: int
    fps: float
    spans: tuple[TimedGloss, ...]
    detected: bool = True  # anybody detected in any frame

    @property
    def glosses(self) -> list[str]:
        return [s.gloss for s in self.spans]

    def to_dict(self) -> dict[str, Any]:
        """The record ``sign-ctc-predict`` writes to predictions.json (times rounded to 0.1 ms)."""
        return {"id": self.id, "frames": self.frames, "glosses": " ".join(self.glosses), "fps": self.fps,
                "detected": self.detected,
                "spans": [s.as_dict() for s in self.spans]}


def read_inputs(video: str | Path | None = None, pose: str | Path | None = None, model_complexity: int = 1,
                refine_face: bool = False, tracker: str = "auto",
                model_asset: str | None = None) -> list[tuple[str, Landmarks]]:
    """(id, landmarks) of each input: a ``.pose`` file read, or ``video`` (a file, a folder of videos or a
    frame folder) run through MediaPipe Holistic as ``sign-ctc-extract`` does."""
    from sign_ctc.features.pose_io import landmarks_from_pose, read_pose

    if (video is None) == (pose is None):
        raise ConfigError("give video=<file | folder of videos | frame folder> or pose=<file.pose> (one of them)")
    if pose is not None:
        return [(Path(pose).stem, read_pose(pose))]
    from sign_ctc.extraction.discover import discover
    from sign_ctc.extraction.tracker import HolisticOptions, check_backend
    from sign_ctc.extraction.worker import extract_pose

    options = HolisticOptions(model_complexity=int(model_complexity), refine_face=bool(refine_face), backend=tracker,
                              model_asset=model_asset)
    check_backend(options)
    out = []
    for item in discover(str(video)):
        extracted, _ = extract_pose(item, options)
        out.append((item.id, landmarks_from_pose(extracted, source=item.sources[0])))
    return out


class Recognizer:
    """A trained model ready to recognize signing: landmarks -> features -> model -> glosses with times.

    Build it with :meth:`from_checkpoint` or :meth:`from_exported`; :meth:`predict` takes a video or a
    ``.pose`` file, :meth:`predict_landmarks` landmarks already in memory.
    """

    def __init__(self, forward: Callable[[Landmarks], tuple[torch.Tensor, torch.Tensor]], decoder: Any,
                 vocab: Vocabulary, stride: int, model_complexity: int = 1, refine_face: bool = False,
                 pause_seconds: float | None = 1.0, tracker: str = "auto", model_asset: str | None = None):
        """``pause_seconds``: a pause (no hand detected for this long) splits the input into segments
        recognized one at a time, as ``sign-ctc-live`` does (:mod:`sign_ctc.features.pauses`); None: the
        whole input is one sentence. ``tracker``, ``model_asset``: the MediaPipe API for videos."""
        self._forward = forward
        self._decoder = decoder
        self.vocab = vocab
        self.stride = int(stride)
        self.model_complexity = model_complexity
        self.refine_face = refine_face
        self.pause_seconds = pause_seconds
        self.tracker = tracker
        self.model_asset = model_asset

    @classmethod
    def from_module(cls, module: Any, **options: Any) -> Recognizer:
        """A :class:`~sign_ctc.models.ctc_module.CTCModule` already in memory (its test decoder, greedy if none)."""
        module.eval()
        if module.normalizer.signer_level and not module.normalizer.signer_stats:
            log.warning("this model was trained with normalization.signer_level=true; a recording on its own has no "
                        "signer statistics, so it is normalized with the train split's, which the model never saw "
                        "(eval.py fits the signers of a corpus split)")
        return cls(lambda lm: forward_landmarks(module, lm), module.test_decoder, module.vocab,
                   module.net.total_stride, **options)

    @classmethod
    def from_checkpoint(cls, ckpt_path: str | Path, decoding: DictConfig | Mapping[str, Any] | None = None,
                        **extraction: Any) -> Recognizer:
        """A training checkpoint. ``decoding``: a decoding config (e.g. ``sign_ctc/conf/decoding/beam.yaml``
        loaded); beam search uses the LM weight and word bonus tuned beside the checkpoint unless set
        (:mod:`sign_ctc.run.decoding_setup`). ``extraction``: ``model_complexity``, ``refine_face`` for videos."""
        from sign_ctc.run.decoding_setup import decoder_factory
        from sign_ctc.models.checkpoint import load_module

        return cls.from_module(load_module(ckpt_path, test_decoder=decoder_factory(decoding, ckpt_path)), **extraction)

    @classmethod
    def from_exported(cls, model_path: str | Path, decoding: DictConfig | Mapping[str, Any] | None = None,
                      **extraction: Any) -> Recognizer:
        """A model written by ``sign-ctc-export`` (ONNX or TorchScript, its JSON beside it)."""
        from sign_ctc.run.decoding_setup import decoder_factory
        from sign_ctc.models.export import ExportedModel

        exported = ExportedModel(model_path)
        factory = decoder_factory(decoding)
        decoder = factory(vocab_tokens=exported.vocab.tokens) if factory is not None else None

        def forward(lm: Landmarks) -> tuple[torch.Tensor, torch.Tensor]:
            features, presence, _ = model_inputs(lm, exported.missing)
            return exported(features, presence)

        return cls(forward, decoder, exported.vocab, int(exported.meta.get("total_stride", 1)), **extraction)

    @torch.no_grad()
    def predict_landmarks(self, lm: Landmarks, id: str = "input") -> Prediction:
        """Glosses of one sequence of landmarks, each timed at ``lm.fps``: segment by segment (pauses),
        and no gloss where nobody was detected (:mod:`sign_ctc.decoding.idle`)."""
        fps = float(lm.fps)
        pause = max(1, round(self.pause_seconds * fps)) if self.pause_seconds else None
        spans: list[TimedGloss] = []
        for start, seg in segments(lm, pause):
            log_probs, out_lengths = self._forward(seg)
            log_probs = without_idle(log_probs, out_lengths, torch.from_numpy(seg.presence), self.stride,
                                     self.vocab.blank_id)
            glosses = decode(log_probs, out_lengths, self._decoder, self.vocab)
            n_out = int(out_lengths[0])
            alignment = align_sequence(log_probs[0, :n_out].float(), glosses, self.vocab.tokens, self.stride,
                                       len(seg), self.vocab.blank_id, what=id)
            spans += [TimedGloss(s.gloss, (start + s.input_start) / fps, (start + s.input_end) / fps)
                      for s in alignment.spans]
        return Prediction(id=id, frames=len(lm), fps=fps, spans=tuple(spans), detected=bool(lm.presence.any()))

    def predict_all(self, video: str | Path | None = None, pose: str | Path | None = None) -> list[Prediction]:
        """One :class:`Prediction` per input: ``video`` may be a folder of videos or frame folders."""
        inputs = read_inputs(video, pose, self.model_complexity, self.refine_face, self.tracker, self.model_asset)
        return [self.predict_landmarks(lm, id=sid) for sid, lm in inputs]

    def predict(self, video: str | Path | None = None, pose: str | Path | None = None) -> Prediction:
        """The glosses of one video (file or frame folder) or one ``.pose`` file."""
        results = self.predict_all(video, pose)
        if len(results) != 1:
            raise ValueError(f"{video} holds {len(results)} inputs: use predict_all() for a folder of videos")
        return results[0]
