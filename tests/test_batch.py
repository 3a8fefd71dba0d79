"""labloop batch: pipeline files, detection windows, resuming after SIGKILL, a corrupt store
among good ones, and an external dask scheduler with its worker as separate processes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from labloop.batch import default_pipeline, load_pipeline, parse_pipeline, plan_stores
from labloop.batch.ledger import prepare_store
from labloop.batch.steps.detect import WINDOWS, windows
from labloop.batch.tasks import run_finish, run_part
from labloop.errors import InputError
from labloop.io.atomic import temporary_sibling
from labloop.io.images import as_image
from labloop.io.store import DETECTIONS, create_experiment, open_experiment, read_table
from labloop.synth import SynthConfig, simulate_movie

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"
FRAMES = 6
#: a pipeline that keeps every store to a few seconds of work
SMALL_PIPELINE = """
[pipeline]
name = "small"
steps = ["detect", "track", "measure"]
[detect]
window = {window}
[measure]
tracker_samples = 2
n_draws = 20
"""


def labloop(*args: str | Path, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labloop", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def write_pipeline(folder: Path, text: str, name: str = "pipeline.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> list[Path]:
    """Three small simulated stores (6 frames of 16 × 64 × 64 voxels), never modified."""
    folder = tmp_path_factory.mktemp("pristine")
    stores = []
    for seed in (1, 2, 3):
        movie = simulate_movie(SynthConfig(frames=FRAMES, shape=(16, 64, 64), n_cells=12,
                                           seed=seed))
        image = as_image(movie.image, movie.voxel_size_um, movie.frame_interval_h)
        stores.append(create_experiment(folder / f"pos{seed}.zarr", image).path)
    return stores


@pytest.fixture
def stores(pristine: list[Path], tmp_path: Path) -> list[Path]:
    """Fresh copies of the pristine stores for one test."""
    copies = [tmp_path / p.name for p in pristine]
    for source, copy in zip(pristine, copies, strict=True):
        shutil.copytree(source, copy)
    return copies


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """Batch tasks run torch on one thread; give the test process its setting back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ pipeline files
def test_standard_pipeline_file_is_the_default_pipeline() -> None:
    standard = load_pipeline(PIPELINES / "standard.toml")
    default = default_pipeline()
    assert [s.name for s in standard.steps] == ["detect", "track", "measure"]
    assert standard.steps == default.steps and standard.keys() == default.keys()


def test_readme_documents_every_key() -> None:
    readme = (PIPELINES / "README.md").read_text()
    names: list[str] = []
    for config in default_pipeline().steps:
        for part in (config.settings, config.options):
            for field in dataclasses.fields(part):
                value = getattr(part, field.name)
                nested = dataclasses.fields(value) if dataclasses.is_dataclass(value) else []
                names += [f.name for f in nested] or [field.name]
    missing = [name for name in names if f"| `{name}` |" not in readme]
    assert not missing


@pytest.mark.parametrize(("text", "message"), [
    ('[pipeline]\nsteps = ["detect"]\n[detect]\nmin_scor = 0.3\n',
     "unknown key detect.min_scor (known keys of [detect]: "),
    ('[pipeline]\nsteps = ["detect", "track"]\n[track.solver]\nfoo = 1\n',
     "unknown key track.solver.foo"),
    ('[pipeline]\nsteps = ["detect"]\n[detect]\nmin_score = "high"\n',
     "detect.min_score must be a number, got 'high'"),
    ('[pipeline]\nsteps = ["detect"]\n[detect]\nsubvoxel = 1\n',
     "detect.subvoxel must be true or false"),
    ('[pipeline]\nsteps = ["detect"]\n[detect]\ntile_overlap_um = [1, 2]\n',
     "detect.tile_overlap_um must be a list of 3 numbers"),
    ('[pipeline]\nsteps = ["detect"]\n[detect]\nmin_score = 2\n',
     "[detect]: min_score must be between 0 and 1"),
    ('[pipeline]\nsteps = ["detect"]\n[detect]\nwindow = 0\n',
     "window must be at least 1 frame"),
    ('[pipeline]\nsteps = ["track"]\n[track]\ncandidates = 3\n',
     "track.candidates must be a table"),
    ('[pipeline]\nsteps = ["measure"]\n[measure]\nlandmark = [1, 2]\n',
     "measure.landmark must be a text or a list of 3 numbers"),
    ('[pipeline]\nsteps = ["detect", "segment"]\n', "unknown step 'segment'"),
    ('[pipeline]\nsteps = ["track", "detect"]\n', "must follow the loop order"),
    ('[pipeline]\nsteps = ["detect", "detect"]\n', "names a step twice"),
    ('[pipeline]\nsteps = []\n', "pipeline.steps must be a non-empty list"),
    ('[pipeline]\nsteps = ["detect"]\n[measure]\nseed = 1\n',
     "table [measure] is not a step of this pipeline"),
    ('[pipeline]\nsteps = ["detect"]\nworkers = 2\n', "unknown key pipeline.workers"),
    ('[detect]\nmin_score = 0.3\n', "no [pipeline] table"),
    ('[pipeline\nsteps = ["detect"]\n', "not valid TOML"),
])
def test_pipeline_errors_name_the_file_and_the_key(tmp_path: Path, text: str,
                                                   message: str) -> None:
    path = write_pipeline(tmp_path, text)
    with pytest.raises(InputError) as caught:
        load_pipeline(path)
    line = str(caught.value)
    assert line.startswith(f"{path}: ") and message in line and "\n" not in line


def test_missing_pipeline_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such pipeline file"):
        load_pipeline(tmp_path / "absent.toml")


def test_settings_map_to_the_step_dataclasses(tmp_path: Path) -> None:
    pipeline = parse_pipeline({
        "pipeline": {"steps": ["detect", "track", "measure"]},
        "detect": {"window": 3, "min_score": 0.25, "tile_overlap_um": [4, 8, 8]},
        "track": {"candidates": {"gap_closing": True}, "marginals": {"temperature": 2}},
        "measure": {"landmark": [1.0, 2.0, 3.0], "tracker_samples": 0}})
    detect, track, measure = pipeline.steps
    assert detect.options.window == 3 and detect.settings.min_score == 0.25
    assert detect.settings.tile_overlap_um == (4.0, 8.0, 8.0)
    assert track.settings.candidates.gap_closing is True
    assert track.settings.marginals.temperature == 2.0
    assert measure.settings.landmark == (1.0, 2.0, 3.0)
    assert measure.options.tracker_samples == 0


def test_a_changed_parameter_invalidates_its_step_and_the_later_ones() -> None:
    base = {"pipeline": {"steps": ["detect", "track", "measure"]}}
    keys = parse_pipeline(base).keys()
    retracked = parse_pipeline({**base, "track": {"solver": {"max_cost": 10.0}}}).keys()
    assert retracked[0] == keys[0] and retracked[1] != keys[1] and retracked[2] != keys[2]
    # the window size changes how detection is split, not its result
    assert parse_pipeline({**base, "detect": {"window": 4}}).keys() == keys


def test_windows() -> None:
    assert windows(6, 1) == [(t, t + 1) for t in range(6)]
    assert windows(6, 4) == [(0, 4), (4, 6)]
    assert windows(3, 10) == [(0, 3)]


# ------------------------------------------------------------- steps in process
def test_detection_windows_give_the_detectors_table(stores: list[Path], tmp_path: Path,
                                                    torch_threads: None) -> None:
    from labloop.detect import detect

    store = stores[0]
    pipeline = load_pipeline(write_pipeline(tmp_path, SMALL_PIPELINE.format(window=4)))
    (plan,) = plan_stores([store], pipeline)
    detect_step = plan.steps[0]
    assert not detect_step.done and detect_step.parts == ((0, 4), (4, 6))
    config, key = detect_step.config, detect_step.key
    assert run_part(store, config, key, (0, 4)).reused is False
    assert run_part(store, config, key, (0, 4)).reused is True  # cached in the store
    run_part(store, config, key, (4, 6))
    run_finish(store, config, key, [(0, 4), (4, 6)])
    experiment = open_experiment(store)
    reference = detect(experiment.image, settings=config.settings, progress=False)
    pd.testing.assert_frame_equal(experiment.read_detections(), reference, check_exact=True)
    assert experiment.record(DETECTIONS)["params"]["min_score"] == 0.5
    assert not (experiment.results_path / "batch" / WINDOWS).exists()
    (replan,) = plan_stores([store], pipeline)
    assert [s.done for s in replan.steps] == [True, False, False]


def test_planning_tidies_writes_a_kill_left_behind(stores: list[Path]) -> None:
    experiment = open_experiment(stores[0])
    results = experiment.results_path
    half_written = temporary_sibling(results / "detections")
    half_written.mkdir()
    (results / ".truth.geff.old-0123456789ab").mkdir()  # killed inside the final swap
    prepare_store(experiment)
    assert not half_written.exists()
    assert (results / "truth.geff").is_dir()


# ---------------------------------------------------------------- whole batches
def read_summary(path: Path) -> dict[str, dict[str, Any]]:
    return {Path(row["store"]).name: row for row in json.loads(path.read_text())["stores"]}


def corrupt(store: Path, how: str) -> None:
    """Break a store the way disks and people do."""
    if how == "garbage metadata":
        (store / "zarr.json").write_text("{not json")
        return
    chunk = next(p for p in sorted((store / "0" / "c" / "2").rglob("*")) if p.is_file())
    if how == "deleted chunk":
        chunk.unlink()
    else:  # truncated chunk
        chunk.write_bytes(chunk.read_bytes()[:10])


@pytest.mark.slow
def test_corrupt_stores_fail_alone_and_a_rerun_skips_finished_steps(
        pristine: list[Path], tmp_path: Path) -> None:
    good = []
    for source in pristine[:2]:
        good.append(tmp_path / source.name)
        shutil.copytree(source, good[-1])
    broken = {"garbage metadata": "bad-meta.zarr", "deleted chunk": "bad-deleted.zarr",
              "truncated chunk": "bad-truncated.zarr"}
    for how, name in broken.items():
        shutil.copytree(pristine[2], tmp_path / name)
        corrupt(tmp_path / name, how)
    pipeline = write_pipeline(tmp_path, SMALL_PIPELINE.format(window=2))
    summary = tmp_path / "summary.json"
    result = labloop("batch", "--pipeline", pipeline, *good, str(tmp_path / "bad-*.zarr"),
                     "--workers", "2", "--no-progress", "--summary", summary)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "labloop batch: pipeline small" in result.stderr
    rows = read_summary(summary)
    for store in good:
        assert rows[store.name]["status"] == "ok", rows[store.name]
        assert rows[store.name]["steps_run"] == ["detect", "track", "measure"]
        assert open_experiment(store).has("morphometrics")
    reasons = {how: rows[name]["reason"] for how, name in broken.items()}
    assert all(rows[name]["status"] == "failed" for name in broken.values())
    assert reasons["garbage metadata"].startswith("not a zarr group")
    assert reasons["deleted chunk"].startswith("image data missing on disk for frame(s) 2")
    assert reasons["truncated chunk"].startswith("frame 2 cannot be read")

    # everything done: skipped without starting a cluster
    records = [open_experiment(s).record("tracks.geff") for s in good]
    started = time.perf_counter()
    again = labloop("batch", "--pipeline", pipeline, *good, "--summary", summary)
    assert again.returncode == 0, again.stderr
    assert time.perf_counter() - started < 30
    for row in read_summary(summary).values():
        assert row["steps_run"] == [] and row["steps_skipped"] == ["detect", "track", "measure"]
    assert [open_experiment(s).record("tracks.geff") for s in good] == records

    # a changed tracking parameter reruns tracking and measuring, not detection
    detections = open_experiment(good[0]).record(DETECTIONS)
    changed = write_pipeline(tmp_path, SMALL_PIPELINE.format(window=2)
                             + "[track.solver]\nmin_division_probability = 0.05\n", "b.toml")
    third = labloop("batch", "--pipeline", changed, good[0], "--workers", "1",
                    "--no-progress", "--summary", summary)
    assert third.returncode == 0, third.stderr
    row = read_summary(summary)[good[0].name]
    assert row["steps_run"] == ["track", "measure"] and row["steps_skipped"] == ["detect"]
    assert open_experiment(good[0]).record(DETECTIONS) == detections
    params = open_experiment(good[0]).record("tracks.geff")["params"]
    assert params["solver"]["min_division_probability"] == 0.05


def without_times(value: Any) -> Any:
    """Attributes with every ``written_at`` timestamp left out."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k != "written_at"}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def assert_same_zarr(a: Path, b: Path) -> None:
    """Two zarr hierarchies hold the same arrays, bit for bit, and the same attributes."""
    import zarr

    group_a, group_b = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    members_a = dict(group_a.members(max_depth=None))
    members_b = dict(group_b.members(max_depth=None))
    assert sorted(members_a) == sorted(members_b)
    assert without_times(dict(group_a.attrs)) == without_times(dict(group_b.attrs))
    for name, member in members_a.items():
        other = members_b[name]
        assert without_times(dict(member.attrs)) == without_times(dict(other.attrs)), name
        if isinstance(member, zarr.Array):
            x, y = np.asarray(member[...]), np.asarray(other[...])
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert x.tobytes() == y.tobytes(), name


@pytest.mark.slow
def test_killed_run_resumes_to_identical_results(pristine: list[Path], tmp_path: Path) -> None:
    killed, uninterrupted = tmp_path / "killed.zarr", tmp_path / "uninterrupted.zarr"
    shutil.copytree(pristine[0], killed)
    shutil.copytree(pristine[0], uninterrupted)
    pipeline = write_pipeline(tmp_path, SMALL_PIPELINE.format(window=1))
    window_folder = killed / "labloop" / "batch" / WINDOWS
    process = subprocess.Popen([sys.executable, "-m", "labloop", "batch", "--pipeline",
                                str(pipeline), str(killed), "--workers", "2", "--no-progress"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            finished = [p for p in window_folder.glob("*/zarr.json")
                        if not p.parent.name.startswith(".")] if window_folder.exists() else []
            if len(finished) >= 2:
                break
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the CLI and its worker processes
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    interrupted_early = not (killed / "labloop" / DETECTIONS).exists()
    assert not (killed / "labloop" / "morphometrics").exists()

    summary = tmp_path / "summary.json"
    resumed = labloop("batch", "--pipeline", pipeline, killed, uninterrupted, "--workers", "2",
                      "--no-progress", "--summary", summary)
    assert resumed.returncode == 0, resumed.stderr
    rows = read_summary(summary)
    assert rows["uninterrupted.zarr"]["windows_reused"] == 0
    if interrupted_early:  # the windows finished before the kill were not redone
        assert rows["killed.zarr"]["windows_reused"] >= 2
    for name in (DETECTIONS, "tracks.geff", "morphometrics"):
        assert_same_zarr(killed / "labloop" / name, uninterrupted / "labloop" / name)
    pd.testing.assert_frame_equal(read_table(killed / "labloop" / DETECTIONS),
                                  read_table(uninterrupted / "labloop" / DETECTIONS),
                                  check_exact=True)
    leftovers = [p for p in (killed / "labloop").rglob(".*") if ".tmp-" in p.name]
    assert not leftovers


def start(command: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_external_scheduler_and_worker(stores: list[Path], tmp_path: Path) -> None:
    dask = Path(sys.executable).with_name("dask")
    scheduler = start([str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0",
                       "--no-dashboard"], tmp_path / "scheduler.log")
    worker = None
    try:
        address = None
        deadline = time.monotonic() + 60
        while address is None and time.monotonic() < deadline:
            found = re.search(r"Scheduler at:\s+(tcp://\S+)",
                              (tmp_path / "scheduler.log").read_text())
            address = found.group(1) if found else None
            time.sleep(0.2)
        assert address is not None, (tmp_path / "scheduler.log").read_text()
        worker = start([str(dask), "worker", address, "--nworkers", "1", "--nthreads", "1",
                        "--no-dashboard"], tmp_path / "worker.log")
        pipeline = write_pipeline(tmp_path, SMALL_PIPELINE.format(window=3))
        summary = tmp_path / "summary.json"
        result = labloop("batch", "--pipeline", pipeline, stores[0], "--scheduler", address,
                         "--no-progress", "--summary", summary)
        assert result.returncode == 0, result.stderr + (tmp_path / "worker.log").read_text()
        report = json.loads(summary.read_text())
        assert report["stores"][0]["steps_run"] == ["detect", "track", "measure"]
        assert len(report["worker_peak_memory_bytes"]) == 1
        assert open_experiment(stores[0]).has("morphometrics")
    finally:
        if worker is not None:
            stop(worker)
        stop(scheduler)


def test_unreachable_scheduler_is_a_one_line_error(stores: list[Path]) -> None:
    result = labloop("batch", stores[0], "--scheduler", "tcp://127.0.0.1:9", timeout=120,
                     env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith("labloop: error: cannot reach the dask scheduler")
    assert "Traceback" not in result.stderr
