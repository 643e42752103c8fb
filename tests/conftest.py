"""Shared fixtures: the real Hydra config, composed and shrunk; a small synthetic corpus built once."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tests.helpers import compose_cfg

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def no_step_floor() -> Iterator[None]:
    """The tests' tiny corpora (6 steps an epoch, 1 in the README's own-corpus run) would train the
    schedule's 1200-step floor (conf/train.yaml `schedule.min_steps`): here, and in the commands the
    tests start, it is 0, so every run trains its epochs as before. tests/test_schedule.py sets it."""
    before = os.environ.get("SIGN_CTC_MIN_STEPS")
    os.environ["SIGN_CTC_MIN_STEPS"] = "0"
    yield
    if before is None:
        os.environ.pop("SIGN_CTC_MIN_STEPS", None)
    else:
        os.environ["SIGN_CTC_MIN_STEPS"] = before


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(tmp_path: Path, cache_dir: Path) -> Callable[..., DictConfig]:
    def _make(*overrides: str, config_name: str = "train", output_dir: Path | None = None) -> DictConfig:
        return compose_cfg(config_name, list(overrides), output_dir or tmp_path, cache_dir)

    return _make


@pytest.fixture(scope="session")
def small_corpus(cache_dir: Path):
    """The shrunk synthetic corpus, built once."""
    from sign_ctc.data.synthetic import SyntheticCorpus

    corpus = SyntheticCorpus(cache_dir / "synthetic_s1234", train=48, dev=12, test=12)
    corpus.prepare()
    return corpus


@pytest.fixture(scope="session")
def abc_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A gloss 3-gram LM for which "A B" is always followed by C and D only ever starts a sentence
    (decoding tests: it flips an A B D whose D is not acoustically clear)."""
    from sign_ctc.decoding.lm import train_kneser_ney, write_arpa

    lm = train_kneser_ney([["A", "B", "C"]] * 30 + [["D", "E"]] * 30 + [["A", "E"]] * 5, order=3)
    path = tmp_path_factory.mktemp("lm") / "abc.arpa"
    write_arpa(lm, path)
    return str(path)
