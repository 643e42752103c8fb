"""The Optuna sweeper's SQLite storage and sampler (sign_ctc/conf/hparams_search/optuna.yaml), resumable."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SWEEPER_PLUGIN = "hydra_plugins.hydra_optuna_sweeper"


def optuna_sweeper_error(overrides: Sequence[str]) -> str | None:
    """Why ``hparams_search=optuna`` (among ``overrides``) cannot run here, or None when it can or is not asked.

    The sweeper (hydra-optuna-sweeper 1.3.0) needs optuna 2.10, whose SQLite storage needs SQLAlchemy
    1.4, which publishes no Python 3.13 wheel: pyproject installs the four on Python 3.11 and 3.12 only.
    """
    if not any(re.fullmatch(r"\+{0,2}hparams_search=optuna", arg) for arg in overrides):
        return None
    if importlib.util.find_spec(SWEEPER_PLUGIN) is not None:
        return None
    if sys.version_info >= (3, 13):
        why = (f"SQLAlchemy 1.4 (optuna 2.10's SQLite storage) has no wheel for Python "
               f"{sys.version_info.major}.{sys.version_info.minor}, so the package installs the sweeper on "
               f"Python 3.11 and 3.12 only; run the search there")
    else:
        why = "it is not installed here (pip install hydra-optuna-sweeper==1.3.0 optuna==2.10.1 SQLAlchemy==1.4.54)"
    return (f"hparams_search=optuna needs the Optuna sweeper (hydra-optuna-sweeper, optuna 2.10), which cannot be "
            f"imported: {why}. A grid sweep needs no plugin: sign-ctc-train -m key=a,b")


def optuna_storage(path: str, study_name: str | None = None) -> str:
    """SQLite storage URL for the Optuna sweeper; makes the folder, and recovers an interrupted study.

    Trials that an interrupted launch left RUNNING are marked FAIL and their parameters are queued,
    so the next launch runs them first. (Only one launch may use a study at a time.)
    """
    db = Path(path).resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{db}"
    if study_name and db.is_file():
        import optuna
        from optuna.trial import TrialState

        try:
            study = optuna.load_study(study_name=study_name, storage=url)
        except KeyError:  # no such study yet
            return url
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_state(trial._trial_id, TrialState.FAIL)
            if trial.params:
                study.enqueue_trial(trial.params)
            print(f"optuna: trial {trial.number} of study {study_name!r} was interrupted; re-queued {trial.params}",
                  file=sys.stderr)
    return url


class ResumableTPESampler:
    """Optuna's TPESampler, seeded with ``seed + N`` where N = trials already in the study at this launch.

    A TPESampler seeded with the same ``seed`` on every launch replays its random draws: a search
    resumed from its storage proposed again the parameters of trials it had finished (the first
    ``n_startup_trials`` proposals are random). N is the number of the first trial this launch
    runs: the trials (finished or failed) the study held when the launch began, 0 for a new study,
    which then gets exactly the proposals of ``TPESampler(seed=seed)``. So the same storage always
    gives the same seed, and a launch that proposed parameters leaves more trials behind: the next
    one draws from another random stream. The TPESampler is made on first use, when N is known;
    optuna's sampler methods are forwarded to it. ``seed=None``: unseeded, as TPESampler.
    """

    def __init__(self, seed: int | None = None, **tpe_kwargs: Any):
        self.seed = seed
        self.tpe_kwargs = tpe_kwargs
        self.derived_seed: int | None = None
        self._sampler: Any = None

    def sampler(self, trial: Any) -> Any:
        """The TPESampler, made for the first trial this launch asks (``trial.number`` = N)."""
        if self._sampler is None:
            from optuna.samplers import TPESampler

            if self.seed is not None:
                self.derived_seed = self.seed + trial.number
                if trial.number:
                    print(f"optuna: resuming a study of {trial.number} trial(s): TPE sampler seed "
                          f"{self.seed} + {trial.number} = {self.derived_seed}", file=sys.stderr)
            self._sampler = TPESampler(seed=self.derived_seed, **self.tpe_kwargs)
        return self._sampler

    def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
        return self.sampler(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
        return self.sampler(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        return self.sampler(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Any, trial: Any) -> None:  # optuna >= 3
        sampler = self.sampler(trial)
        if hasattr(sampler, "before_trial"):
            sampler.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.sampler(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        if self._sampler is not None:
            self._sampler.reseed_rng()
