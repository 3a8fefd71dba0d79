"""Batch processing: run a pipeline over many experiment stores on dask, resumably.

- :func:`load_pipeline` / :func:`default_pipeline` — the steps and their
  parameters (a TOML file in ``pipelines/``, see ``pipelines/README.md``);
- :func:`run_batch` — plan every store, run the remaining work as dask tasks (a
  local cluster, or any scheduler), and return a :class:`BatchReport`;
- :func:`summary_table` — that report as a rich table.

A step finished on a store is recorded in it (``labloop/batch/steps``) with a
fingerprint of its parameters; a later run skips it, and a changed parameter
reruns that step and the ones after it. Detection runs in time windows whose
results are cached in the store, so a run killed at any moment resumes where it
stopped and ends with the same results as an uninterrupted one.
"""

from labloop.batch.cluster import connect
from labloop.batch.pipeline import Pipeline, default_pipeline, load_pipeline, parse_pipeline
from labloop.batch.report import BatchReport, StoreReport, summary_table
from labloop.batch.runner import expand_stores, plan_stores, run_batch, run_plans
from labloop.batch.steps import STEPS, Step, StepConfig

__all__ = [
    "STEPS",
    "BatchReport",
    "Pipeline",
    "Step",
    "StepConfig",
    "StoreReport",
    "connect",
    "default_pipeline",
    "expand_stores",
    "load_pipeline",
    "parse_pipeline",
    "plan_stores",
    "run_batch",
    "run_plans",
    "summary_table",
]
