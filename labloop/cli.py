"""The ``labloop`` command line.

Every command reports bad input as one line ``labloop: error: <file>: <problem>``
and exits with status 2; results are written atomically.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from labloop.errors import InputError

if TYPE_CHECKING:
    from labloop.io.store import Experiment
    from labloop.lineage import Lineage

app = typer.Typer(
    name="labloop",
    help="From 3D time-lapses of nuclei to calibrated lineages and a predictive tissue model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

StorePath = Annotated[Path, typer.Argument(help="Experiment store (.zarr folder).")]


def parse_triple(text: str, what: str) -> tuple[float, float, float]:
    """Parse ``"z,y,x"`` into three floats."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{what} must be three numbers z,y,x, got {text!r}") from None
    if len(values) != 3:
        raise InputError(f"{what} must be three numbers z,y,x, got {text!r}")
    return values  # type: ignore[return-value]


def parse_shape(text: str) -> tuple[int, int, int]:
    """Parse ``"Z,Y,X"`` into three positive integers."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"shape must be three integers Z,Y,X, got {text!r}") from None
    if len(values) != 3 or min(values) < 1:
        raise InputError(f"shape must be three positive integers Z,Y,X, got {text!r}")
    return values  # type: ignore[return-value]


@app.command()
def sample(
    out: Annotated[Path, typer.Argument(help="Output store (.zarr).")],
    frames: Annotated[int, typer.Option(help="Number of time points.")] = 20,
    cells: Annotated[int, typer.Option(help="Cells in the field of view at the start.")] = 40,
    snr: Annotated[float, typer.Option(help="Signal-to-noise ratio of nuclei.")] = 6.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same movie).")] = 0,
    shape: Annotated[str, typer.Option(help="Volume shape Z,Y,X in voxels (Z=1: 2D).")]
    = "32,128,128",
    voxel_size: Annotated[str, typer.Option(help="Voxel size z,y,x in µm.")] = "2.0,0.5,0.5",
    frame_interval: Annotated[float, typer.Option(help="Hours between frames.")] = 0.25,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store.")] = False,
) -> None:
    """Simulate a time-lapse of nuclei with its ground-truth lineage (labloop/truth.geff)."""
    from dataclasses import asdict

    from labloop.io.images import as_image
    from labloop.io.store import create_experiment
    from labloop.synth import SynthConfig, simulate_movie

    config = SynthConfig(frames=frames, n_cells=cells, snr=snr, seed=seed,
                         shape=parse_shape(shape),
                         voxel_size_um=parse_triple(voxel_size, "voxel size"),
                         frame_interval_h=frame_interval)
    with console.status(f"simulating {frames} frames of {shape} voxels"):
        movie = simulate_movie(config)
    image = as_image(movie.image, movie.voxel_size_um, movie.frame_interval_h)
    create_experiment(out, image, truth=movie.truth, params=asdict(config),
                      overwrite=overwrite)
    console.print(f"wrote {out}: {movie.image.shape[0]} frames of {movie.image.shape[1:]} "
                  f"voxels, {movie.truth.n_nodes} nuclei, {movie.truth.n_divisions} divisions")


@app.command("import")
def import_image(
    source: Annotated[Path, typer.Argument(help="OME-Zarr, TIFF or .npy image.")],
    out: Annotated[Path, typer.Argument(help="Output store (.zarr).")],
    voxel_size: Annotated[str | None, typer.Option(help="Voxel size z,y,x in µm.")] = None,
    frame_interval: Annotated[float | None, typer.Option(help="Hours between frames.")] = None,
    axes: Annotated[str | None, typer.Option(help="Axis order of a TIFF/npy, e.g. tzyx.")]
    = None,
    channel: Annotated[int, typer.Option(help="Channel to keep.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store.")] = False,
) -> None:
    """Import an image into a new experiment store (OME-Zarr 0.5, one chunk per frame)."""
    from labloop.io.images import read_image
    from labloop.io.store import create_experiment

    voxel = None if voxel_size is None else parse_triple(voxel_size, "voxel size")
    image = read_image(source, voxel, frame_interval,
                       axes=axes, channel=channel)
    image.verify()
    create_experiment(out, image, params={"source": str(source)}, overwrite=overwrite)
    console.print(f"wrote {out}: {image.shape} voxels of {image.voxel_size_um} µm")


@app.command()
def info(
    store: StorePath,
    verify: Annotated[bool, typer.Option(help="Decode every chunk of the image.")] = False,
) -> None:
    """Summarise a store: image, units and the results it holds (JSON to stdout)."""
    from labloop.io.store import open_experiment

    experiment = open_experiment(store)
    image = experiment.image
    if verify:
        image.verify()
    results = {}
    if experiment.results_path.exists():
        for child in sorted(experiment.results_path.iterdir()):
            if child.name.startswith(".") or not (child / "zarr.json").exists():
                continue
            results[child.name] = experiment.record(child.name)
    summary = {"store": str(store), "shape_tzyx": list(image.shape),
               "voxel_size_um": list(image.voxel_size_um),
               "frame_interval_h": image.frame_interval_h, "results": results}
    print(json.dumps(summary, indent=2))


@app.command()
def evaluate(
    store: StorePath,
    radius: Annotated[float, typer.Option(help="Matching radius in µm.")] = 3.0,
) -> None:
    """Score the store's detections and tracks against labloop/truth.geff (JSON to stdout)."""
    from labloop.evaluate import evaluate as evaluate_lineages
    from labloop.io.store import DETECTIONS, TRACKS, TRUTH, open_experiment

    experiment = open_experiment(store)
    if not experiment.has(TRUTH):
        raise InputError("no ground truth (labloop/truth.geff) to evaluate against", store)
    if not experiment.has(TRACKS) and not experiment.has(DETECTIONS):
        raise InputError("nothing to evaluate yet: run `labloop detect` or `labloop track`",
                         store)
    truth = experiment.read_truth()
    predicted = experiment.read_tracks() if experiment.has(TRACKS) else None
    detections = experiment.read_detections() if experiment.has(DETECTIONS) else None
    result = evaluate_lineages(truth, predicted=predicted, detections=detections,
                               radius_um=radius)
    print(json.dumps(result, indent=2))


@app.command()
def export(
    store: StorePath,
    ctc: Annotated[Path | None, typer.Option(help="Write Cell Tracking Challenge files here.")]
    = None,
    csv: Annotated[Path | None, typer.Option(help="Write nodes.csv and edges.csv here.")] = None,
    geff: Annotated[Path | None, typer.Option(help="Write a GEFF copy here.")] = None,
    truth: Annotated[bool, typer.Option(help="Export the ground truth, not the tracks.")]
    = False,
) -> None:
    """Export the store's lineage as CTC (res_track.txt + masks), CSV or GEFF."""
    from labloop.io.store import TRACKS, TRUTH, open_experiment

    if ctc is None and csv is None and geff is None:
        raise InputError("say where to export: --ctc DIR, --csv DIR or --geff PATH")
    experiment = open_experiment(store)
    lineage = experiment.read_lineage(TRUTH if truth else TRACKS)
    if ctc is not None:
        image = experiment.image
        lineage.to_ctc(ctc, shape=image.shape, voxel_size_um=image.voxel_size_um)
        console.print(f"wrote {ctc}")
    if csv is not None:
        lineage.to_csv(csv)
        console.print(f"wrote {csv}")
    if geff is not None:
        lineage.to_geff(geff)
        console.print(f"wrote {geff}")


@app.command()
def detect(
    store: StorePath,
    model: Annotated[Path | None, typer.Option(
        help="Detector weights (.safetensors; default: the shipped model).")] = None,
    min_score: Annotated[float, typer.Option(help="Keep nuclei with at least this score.")]
    = 0.5,
    min_separation: Annotated[float, typer.Option(help="Closest two nuclei may be, in µm.")]
    = 3.0,
    voxel_size: Annotated[str | None, typer.Option(help="Voxel size z,y,x in µm.")] = None,
    tile_voxels: Annotated[int, typer.Option(help="Largest tile, in working voxels.")]
    = 2**21,
) -> None:
    """Find nuclei in every frame with the 3D U-Net (labloop/detections)."""
    from labloop.detect import detect_store

    voxel = None if voxel_size is None else parse_triple(voxel_size, "voxel size")
    detections = detect_store(store, model=model, voxel_size_um=voxel, min_score=min_score,
                              min_separation_um=min_separation, tile_voxels=tile_voxels)
    console.print(f"{len(detections)} nuclei in {detections['t'].nunique()} frame(s)")


@app.command("train-detector")
def train_detector_command(
    out: Annotated[Path, typer.Option(help="Where to write the weights (.safetensors).")]
    = Path("models/nucleus_unet.safetensors"),
    seed: Annotated[int, typer.Option(help="Seed of data, initialisation and order.")] = 0,
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 3000,
    stop_step: Annotated[int | None, typer.Option(
        help="Stop after this step (to reproduce a time-limited run).")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Wall-clock budget.")] = None,
    pool_size: Annotated[int, typer.Option(help="Simulated training volumes.")] = 700,
    val_size: Annotated[int, typer.Option(help="Simulated validation volumes.")] = 40,
    calib_size: Annotated[int, typer.Option(help="Volumes for score calibration.")] = 120,
    batch_size: Annotated[int, typer.Option(help="Crops per step.")] = 8,
    workers: Annotated[int, typer.Option(help="Processes simulating data.")] = 2,
    init: Annotated[Path | None, typer.Option(help="Start from these weights.")] = None,
    image: Annotated[Path | None, typer.Option(
        help="Your image to fine-tune on (OME-Zarr/TIFF/npy).")] = None,
    annotations: Annotated[Path | None, typer.Option(
        help="Your nucleus centres: CSV t,z,y,x in µm, or GEFF.")] = None,
    voxel_size: Annotated[str | None, typer.Option(help="Voxel size z,y,x in µm.")] = None,
    radius: Annotated[float | None, typer.Option(help="Typical nucleus radius, µm.")] = None,
) -> None:
    """Train (or fine-tune on your annotations) the nucleus detector, reproducibly."""
    from labloop.detect import TrainSettings, train_detector

    settings = TrainSettings(seed=seed, steps=steps, stop_step=stop_step,
                             max_minutes=max_minutes, pool_size=pool_size, val_size=val_size,
                             calib_size=calib_size, batch_size=batch_size, workers=workers)
    voxel = None if voxel_size is None else parse_triple(voxel_size, "voxel size")
    train_detector(out, settings, init=init, image=image, annotations=annotations,
                   voxel_size_um=voxel, radius_um=radius,
                   command="labloop " + " ".join(sys.argv[1:]))
    console.print(f"wrote {out}")


@app.command()
def track(
    store: StorePath,
    gap_closing: Annotated[bool, typer.Option(
        help="Also link t→t+2 over a missed detection.")] = True,
    fill_gaps: Annotated[bool, typer.Option(
        help="Put a missed nucleus back (interpolated) on each closed gap.")] = True,
    max_candidates: Annotated[int, typer.Option(help="Nearest candidates per nucleus.")] = 5,
    max_displacement: Annotated[float, typer.Option(
        help="Largest step, in local nucleus spacings.")] = 1.5,
    min_division_probability: Annotated[float, typer.Option(
        help="Divisions only where called at least this likely.")] = 0.02,
    temperature: Annotated[float | None, typer.Option(
        help="Marginal temperature (default: fitted).")] = None,
    model: Annotated[Path | None, typer.Option(
        help="Event-model JSON (default: the shipped one).")] = None,
    frame_interval: Annotated[float | None, typer.Option(help="Hours between frames.")] = None,
    voxel_size: Annotated[str | None, typer.Option(help="Voxel size z,y,x in µm.")] = None,
) -> None:
    """Link detections into a lineage with calibrated error probabilities (tracks.geff)."""
    from labloop.track import (
        CandidateSettings,
        MarginalSettings,
        SolverSettings,
        TrackSettings,
        track_store,
    )

    settings = TrackSettings(
        candidates=CandidateSettings(gap_closing=gap_closing, max_candidates=max_candidates,
                                     max_displacement_spacing=max_displacement),
        solver=SolverSettings(min_division_probability=min_division_probability),
        marginals=MarginalSettings(temperature=temperature),
        model_path=None if model is None else str(model), fill_gaps=fill_gaps)
    voxel = None if voxel_size is None else parse_triple(voxel_size, "voxel size")
    with console.status("tracking"):
        lineage = track_store(store, settings, frame_interval_h=frame_interval,
                              voxel_size_um=voxel)
    console.print(f"{lineage!r}; expected number of wrong links "
                  f"{lineage.edges['error_probability'].sum():.1f}")


def sample_tracker_lineages(experiment: Experiment, n: int, seed: int) -> list[Lineage]:
    """Draw ``n`` alternative lineages of a store's detections from the tracker's model."""
    from labloop.io.store import DETECTIONS
    from labloop.track import sample_lineages

    if not experiment.has(DETECTIONS):
        return []
    image = experiment.image
    with console.status(f"sampling {n} lineages from the tracker"):
        return sample_lineages(experiment.read_detections(), n, seed,
                               frame_interval_h=image.frame_interval_h,
                               image_shape_um=image.extent_um)


@app.command()
def measure(
    store: StorePath,
    truth: Annotated[bool, typer.Option(help="Measure the ground truth, not the tracks.")]
    = False,
    landmark: Annotated[str, typer.Option(
        help="Division-rate profile from: centre, axis, source, or a point z,y,x in µm.")]
    = "centre",
    bin_width: Annotated[float, typer.Option(help="Distance bin width in µm.")] = 10.0,
    draws: Annotated[int, typer.Option(help="Realisations used for the 90% intervals.")]
    = 100,
    samples: Annotated[int, typer.Option(
        help="Lineages sampled by the tracker for the intervals (0: use error "
             "probabilities).")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the realisations.")] = 0,
    report: Annotated[Path | None, typer.Option(help="Also write an HTML report here.")]
    = None,
) -> None:
    """Measure the tissue (counts, divisions, shape, motion) with 90% intervals."""
    from labloop.io.store import TRACKS, TRUTH, open_experiment
    from labloop.measure import MeasureSettings, measure_store

    point = landmark if landmark in ("centre", "axis", "source") else parse_triple(
        landmark, "landmark")
    settings = MeasureSettings(landmark=point, bin_width_um=bin_width, n_draws=draws,
                               seed=seed)
    table = measure_store(store, settings, truth=truth, tracker_samples=samples)
    summary = table[table["t"].isna() & table["bin_lo_um"].isna()]
    for row in summary.itertuples():
        console.print(f"{row.quantity:>24}: {row.value:9.4g}  [{row.lower:.4g}, {row.upper:.4g}]"
                      f" {row.unit}")
    if report is not None:
        from labloop.report import write_report

        lineage = open_experiment(store).read_lineage(TRUTH if truth else TRACKS)
        path = write_report(report, lineage, table, title=f"labloop: {store.name}",
                            landmark=str(landmark))
        console.print(f"report: {path}")


@app.command()
def batch(
    stores: Annotated[list[str], typer.Argument(
        help="Experiment stores, or quoted glob patterns such as 'data/*.zarr'.")],
    pipeline: Annotated[Path | None, typer.Option(
        help="Pipeline file (TOML; see pipelines/README.md). Default: detect → track → "
             "measure with default settings.")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Address of a running dask scheduler, e.g. tcp://host:8786 (default: a local "
             "cluster).")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Worker processes of the local cluster (default: one per CPU core).")] = None,
    summary: Annotated[Path | None, typer.Option(
        help="Also write the summary as JSON here.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run a pipeline over many stores on dask; finished steps are skipped on a rerun.

    Exits with status 1 when any store failed (each failure is named in the summary).
    """
    from labloop.batch import default_pipeline, load_pipeline, run_batch, summary_table

    steps = default_pipeline() if pipeline is None else load_pipeline(pipeline)
    report = run_batch(stores, steps, scheduler=scheduler, workers=workers, progress=progress)
    console.print(summary_table(report))
    if summary is not None:
        report.write_json(summary)
    if report.n_failed:
        sys.exit(1)


@app.command()
def calibrate(
    store: StorePath,
    predict_frames: Annotated[int, typer.Option(
        help="Frames to predict beyond the last observed one.")] = 0,
    starts: Annotated[int, typer.Option(help="Optimisation starts.")] = 3,
    iterations: Annotated[int, typer.Option(help="Most optimisation steps per start.")]
    = 150,
    replicates: Annotated[int, typer.Option(help="Model replicates per evaluation.")] = 8,
    keep_minima: Annotated[float, typer.Option(
        help="Keep every start whose loss ends within this margin of the best one's as "
             "an alternative minimum, each with its own Laplace approximation; the "
             "intervals then cover all of them (0: the best start only).", min=0.0)] = 0.0,
    confine: Annotated[bool, typer.Option(
        help="Confine the cells in an ellipsoid fitted to the observed positions "
             "(an eggshell).")] = False,
    seed: Annotated[int, typer.Option(help="Seed (same seed, same fit).")] = 0,
    correct_observation: Annotated[bool, typer.Option(
        help="Correct the fit for what filming, detection and tracking do to the "
             "morphometrics: film the fitted tissue like this movie (3D) and take the "
             "bias it shows off the observations.")] = False,
    snr: Annotated[float | None, typer.Option(
        help="SNR of that simulated filming (default: measured on the movie at the "
             "detections).")] = None,
    correction_iterations: Annotated[int, typer.Option(
        help="Most times the bias is measured again at the corrected parameters, "
             "towards the correction's fixed point (1: once, at the fit).", min=1)] = 1,
) -> None:
    """Recalibrate the tissue model to the store's lineage by gradients and predict."""
    from rich.progress import Progress

    from labloop.calibrate import CalibrateSettings
    from labloop.calibrate.store import SOURCES, WITHOUT_SOURCES, StoreSettings, calibrate_store
    from labloop.io.store import DETECTIONS, TRACKS, open_experiment

    experiment = open_experiment(store)
    if not experiment.has(TRACKS):  # before the progress bar, so the error is one line
        raise InputError("the store has no tracks yet; run `labloop track` first", store)
    if correct_observation and not experiment.has(DETECTIONS):
        raise InputError("correcting for the measuring chain needs the store's detections; "
                         "run `labloop detect` first", store)
    has_sources = experiment.has(SOURCES)
    fit_settings = CalibrateSettings(
        free=CalibrateSettings().free if has_sources else WITHOUT_SOURCES,
        n_starts=starts, max_iterations=iterations, n_replicates=replicates, seed=seed,
        mode_loss_margin=keep_minima)
    settings = StoreSettings(fit=fit_settings, confine=confine, predict_frames=predict_frames,
                             correct_observation=correct_observation, snr=snr,
                             correction_iterations=correction_iterations)
    with Progress(console=console) as bar:
        task = bar.add_task("fitting the tissue model", total=starts * iterations)
        fit = calibrate_store(store, settings,
                              progress=lambda done, total: bar.update(task, completed=done,
                                                                      total=total))
    console.print(fit.summary())
    if correct_observation:
        snr_used = fit.extra["observation_correction"]["snr"]
        rounds = fit.extra["observation_correction"]["iterations"]
        console.print(f"corrected for filming, detection and tracking (simulated filming at "
                      f"SNR {snr_used:.2f}, bias measured {rounds} time(s); bias per "
                      f"morphometric in fit/observation_bias)")


#: the steps of the full loop, in order
LOOP_STEPS = (
    ("sample", "embedded simulated experiment with ground truth"),
    ("detect", "3D U-Net nucleus detection"),
    ("track", "lineage with calibrated error probabilities"),
    ("measure", "morphometrics with 90% intervals from tracker samples"),
    ("calibrate", "recalibrate the tissue model to the morphometrics by gradients"),
    ("predict", "simulate the recalibrated model from the first frame"),
    ("evaluate", "scores against the sample's ground truth"),
    ("report", "HTML report: predicted versus observed"),
)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's outputs.")]
    = Path("labloop-demo"),
    open_report: Annotated[bool, typer.Option("--open/--no-open",
                                              help="Open the report in a browser.")] = True,
) -> None:
    """Run the whole loop on the embedded sample data and write an HTML report."""
    import shutil
    import time
    import webbrowser

    from rich.progress import Progress

    from labloop.calibrate import CalibrateSettings
    from labloop.calibrate.store import (
        FIT_PARAMETERS,
        PREDICTED_MORPHOMETRICS,
        PREDICTION,
        WITHOUT_SOURCES,
        StoreSettings,
        calibrate_store,
    )
    from labloop.detect import detect_store
    from labloop.evaluate import evaluate as evaluate_lineages
    from labloop.io.store import open_experiment
    from labloop.measure import MeasureSettings, measure_store
    from labloop.report import write_report
    from labloop.sample_data import sample_store_path
    from labloop.track import track_store

    started = time.perf_counter()
    timings: dict[str, float] = {}

    def step(name: str) -> None:
        timings[name] = time.perf_counter() - started - sum(timings.values())
        console.print(f"[green]✓[/] {name} ({timings[name]:.1f} s)")

    out.mkdir(parents=True, exist_ok=True)
    store = out / "sample.zarr"
    if store.exists():
        shutil.rmtree(store)
    shutil.copytree(sample_store_path(), store)
    experiment = open_experiment(store)
    truth = experiment.read_truth()
    image = experiment.image
    image.verify()
    console.print(f"[bold]sample[/]: {image.shape[0]} frames of {image.shape[1:]} voxels "
                  f"({image.voxel_size_um} µm, every {image.frame_interval_h} h), "
                  f"{truth.n_nodes} nuclei, {truth.n_divisions} divisions in the truth")
    step("sample")
    detections = detect_store(store)
    step("detect")
    with console.status("tracking"):
        lineage = track_store(store)
    step("track")
    table = measure_store(store, MeasureSettings(), tracker_samples=20)
    step("measure")
    fit_settings = CalibrateSettings(free=WITHOUT_SOURCES, n_starts=2, max_iterations=40,
                                     n_replicates=6, learning_rate=0.08, patience=10)
    with Progress(console=console) as bar:
        task = bar.add_task("recalibrating the tissue model", total=1)
        fit = calibrate_store(store, StoreSettings(fit=fit_settings, tracker_samples=0),
                              progress=lambda done, total: bar.update(task, completed=done,
                                                                      total=total))
    step("calibrate")
    predicted = experiment.read_table(PREDICTED_MORPHOMETRICS)
    positions = experiment.read_table(PREDICTION)
    step("predict")
    with console.status("evaluating against the ground truth"):
        scores = evaluate_lineages(truth, predicted=lineage, detections=detections)
    step("evaluate")
    tracking = scores["tracking"]
    rates = fit.intervals.set_index("name")
    lam, motility = rates.loc["division.max_rate_per_h"], \
        rates.loc["mechanics.motility_um2_per_h"]
    note = (
        f"The embedded sample ({image.shape[0]} frames, {truth.n_nodes} nuclei in the ground "
        f"truth) went through detection ({len(detections)} nuclei found, F1 "
        f"{scores['detection']['f1']:.3f} against the truth), tracking (edge F1 "
        f"{tracking['edge_f1']:.3f}, division F1 {tracking['division_f1']:.3f}, "
        f"{len(lineage.edges)} links of which {lineage.edges['error_probability'].sum():.1f} "
        "are expected to be wrong) and measurement with 90% intervals from 20 lineages "
        "sampled by the tracker. The tissue model was then recalibrated by gradients to "
        "those measurements (growth and motion; the sample has no source cells, so the "
        f"growth factor plays no part): maximal division rate {lam['value']:.3f}/h "
        f"[{lam['lower']:.3f}, {lam['upper']:.3f}] (the model's cells divide at half of it), "
        f"motility {motility['value']:.2f} µm²/h [{motility['lower']:.2f}, "
        f"{motility['upper']:.2f}]. Curves in red are the recalibrated model run from the "
        "first observed frame (8 replicates, 90% bands), in blue what was measured. "
        "The sample's cells also enter and leave the field of view, which the model does not "
        "simulate.")
    report = write_report(out / "report", lineage, table, predicted=predicted,
                          predicted_label="recalibrated model",
                          title="labloop demo: the embedded sample experiment",
                          notes=[("What this report shows", note),
                                 ("What the data pin down", " ".join(fit.identifiability))],
                          evaluation=scores, predicted_positions=positions,
                          fit=experiment.read_table(FIT_PARAMETERS))
    step("report")
    status = Table(title="labloop demo: the loop on the embedded sample")
    status.add_column("step")
    status.add_column("what")
    status.add_column("seconds", justify="right")
    for name, what in LOOP_STEPS:
        status.add_row(name, what, f"{timings.get(name, 0.0):.1f}")
    console.print(status)
    console.print(f"report: {report}  (total {time.perf_counter() - started:.0f} s)")
    if open_report:
        webbrowser.open(report.resolve().as_uri())


def main() -> None:
    """Entry point: run the app, turning :class:`InputError` into one line and exit 2."""
    try:
        app(standalone_mode=False)
    except InputError as error:
        print(f"labloop: error: {error}", file=sys.stderr)
        sys.exit(2)
    except click.exceptions.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        console.print("labloop: aborted")
        sys.exit(130)


if __name__ == "__main__":
    main()
