"""The ``labloop`` command line.

Every command reports bad input as one line ``labloop: error: <file>: <problem>``
and exits with status 2; results are written atomically.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from labloop.errors import InputError

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
def track(
    store: StorePath,
    gap_closing: Annotated[bool, typer.Option(
        help="Also link t→t+2 over a missed detection.")] = False,
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
        model_path=None if model is None else str(model))
    voxel = None if voxel_size is None else parse_triple(voxel_size, "voxel size")
    with console.status("tracking"):
        lineage = track_store(store, settings, frame_interval_h=frame_interval,
                              voxel_size_um=voxel)
    console.print(f"{lineage!r}; expected number of wrong links "
                  f"{lineage.edges['error_probability'].sum():.1f}")


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
    seed: Annotated[int, typer.Option(help="Seed of the realisations.")] = 0,
    report: Annotated[Path | None, typer.Option(help="Also write an HTML report here.")]
    = None,
) -> None:
    """Measure the tissue (counts, divisions, shape, motion) with 90% intervals."""
    from dataclasses import asdict

    from labloop.io.store import MORPHOMETRICS, TRACKS, TRUTH, open_experiment
    from labloop.measure import MeasureSettings
    from labloop.measure import measure as measure_lineage

    experiment = open_experiment(store)
    name = TRUTH if truth else TRACKS
    lineage = experiment.read_lineage(name)
    point = landmark if landmark in ("centre", "axis", "source") else parse_triple(
        landmark, "landmark")
    settings = MeasureSettings(landmark=point, bin_width_um=bin_width, n_draws=draws,
                               seed=seed)
    table = measure_lineage(lineage, settings=settings, progress=True)
    experiment.write_table(MORPHOMETRICS, table, "measure",
                           {**asdict(settings), "lineage": name})
    summary = table[table["t"].isna() & table["bin_lo_um"].isna()]
    for row in summary.itertuples():
        console.print(f"{row.quantity:>24}: {row.value:9.4g}  [{row.lower:.4g}, {row.upper:.4g}]"
                      f" {row.unit}")
    if report is not None:
        from labloop.report import write_report

        path = write_report(report, lineage, table, title=f"labloop: {store.name}",
                            landmark=str(landmark))
        console.print(f"report: {path}")


#: the steps of the full loop and the issue that brings each one (None: built)
LOOP_STEPS = (
    ("sample", "simulated experiment with ground truth", None),
    ("detect", "3D U-Net nucleus detection", "#3"),
    ("track", "lineage with calibrated error probabilities", "#4"),
    ("measure", "morphometrics with uncertainty and report", None),
    ("calibrate", "recalibrate the tissue model by gradients", "#7"),
    ("predict", "predicted versus observed tissue", "#7"),
)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's outputs.")]
    = Path("labloop-demo"),
    open_report: Annotated[bool, typer.Option("--open/--no-open",
                                              help="Open the report in a browser.")] = True,
) -> None:
    """Run the whole loop on the embedded sample data, saying which steps exist yet."""
    import shutil
    import time
    import webbrowser

    from labloop.io.store import MORPHOMETRICS, open_experiment
    from labloop.measure import MeasureSettings
    from labloop.measure import measure as measure_lineage
    from labloop.report import write_report
    from labloop.sample_data import sample_store_path

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    store = out / "sample.zarr"
    if store.exists():
        shutil.rmtree(store)
    shutil.copytree(sample_store_path(), store)
    experiment = open_experiment(store)
    truth = experiment.read_truth()
    image = experiment.image
    image.verify()
    console.print(f"[bold]sample[/]: {image.shape[0]} frames of {image.shape[1:]} voxels, "
                  f"{truth.n_nodes} nuclei, {truth.n_divisions} divisions")
    settings = MeasureSettings()
    table = measure_lineage(truth, settings=settings, progress=True)
    experiment.write_table(MORPHOMETRICS, table, "measure", {"lineage": "truth.geff"})
    missing = [f"{name} ({issue})" for name, _, issue in LOOP_STEPS if issue is not None]
    note = ("Tracking is not built yet, so the morphometrics below are measured on the "
            "sample's ground-truth lineage (all error probabilities 0). Steps still missing: "
            + ", ".join(missing) + ".")
    report = write_report(out / "report", truth, table,
                          title="labloop demo: the embedded sample experiment",
                          notes=[("What this report shows", note)])
    status = Table(title="labloop demo: the loop on the embedded sample")
    status.add_column("step")
    status.add_column("what")
    status.add_column("status")
    for name, what, issue in LOOP_STEPS:
        done = "[green]done[/]" + (" (on the ground truth)" if name == "measure" else "")
        status.add_row(name, what, done if issue is None else
                       f"[yellow]missing[/] (not built yet, issue {issue})")
    console.print(status)
    console.print(f"report: {report}  ({time.perf_counter() - started:.0f} s)")
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
