"""Plan the work on one store: which steps are already done, which must run.

Planning runs on the client before any task is submitted: it reads the store's
image metadata, checks that every frame has data on disk, tidies writes a killed
run left half-done, and compares each step's fingerprint with what the store
records. A step runs when it is not done or when any step before it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labloop.batch.integrity import check_frames_stored
from labloop.batch.ledger import is_done, prepare_store
from labloop.batch.pipeline import Pipeline
from labloop.batch.steps import StepConfig, get_step
from labloop.errors import InputError
from labloop.io.store import open_experiment


@dataclass(frozen=True)
class PlannedStep:
    """A step of a store's plan.

    Attributes
    ----------
    config
        The configured step.
    key
        Its fingerprint (parameters chained with those of earlier steps).
    done
        True when the store already holds its result for this fingerprint.
    parts
        The parallel pieces of work (e.g. detection windows ``(t0, t1)``).
    """

    config: StepConfig
    key: str
    done: bool
    parts: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class StorePlan:
    """What to do on one store; ``error`` is set (and ``steps`` empty) if it cannot run."""

    path: Path
    steps: tuple[PlannedStep, ...] = ()
    error: str | None = None

    @property
    def to_run(self) -> list[PlannedStep]:
        """The steps that will run, in order."""
        return [step for step in self.steps if not step.done]


def describe_error(error: BaseException, store: Path | None = None) -> str:
    """One line for the summary: the problem (without the store's own path), or the type."""
    if isinstance(error, InputError):
        own = error.path is None or (store is not None
                                     and error.path.resolve() == Path(store).resolve())
        text = error.problem if own else str(error)
    else:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        text = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return text[:300]


def plan_store(path: str | Path, pipeline: Pipeline, keys: list[str]) -> StorePlan:
    """Plan ``pipeline`` on the store at ``path`` (never raises: errors go in the plan).

    Parameters
    ----------
    path
        The experiment store.
    pipeline
        The steps to run.
    keys
        ``pipeline.keys()`` (computed once for all stores).
    """
    path = Path(path)
    try:
        experiment = open_experiment(path)
        n_frames = experiment.image.n_frames
        check_frames_stored(experiment)
        prepare_store(experiment)
        planned: list[PlannedStep] = []
        for config, key in zip(pipeline.steps, keys, strict=True):
            step = get_step(config.name)
            done = (not planned or planned[-1].done) and is_done(
                experiment, step.name, step.result, key)
            if not done:
                step.prepare(experiment)
            parts = () if done else tuple(step.parts(config, n_frames))
            planned.append(PlannedStep(config, key, done, parts))
        return StorePlan(path, tuple(planned))
    except Exception as error:  # a broken store is reported, the others go on
        return StorePlan(path, error=describe_error(error, path))
