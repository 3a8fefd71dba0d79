"""Morphometrics against hand-computed values, the simulator's truth and the real embryo."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from labloop import InputError, Lineage
from labloop.measure import MeasureSettings, measure, wide
from labloop.synth import SynthConfig, simulate_cells
from tests.conftest import CE_FRAME_INTERVAL_H, CE_VOXEL_SIZE_UM

DT = 0.5  # hours between frames in the hand-made lineages
HAND = MeasureSettings(min_cells_for_shape=4, n_draws=50)


def value(table: pd.DataFrame, quantity: str, t: float | None = None) -> pd.Series:
    rows = table[(table["quantity"] == quantity) & table["bin_lo_um"].isna()]
    rows = rows[rows["t"].isna()] if t is None else rows[rows["t"] == t]
    assert len(rows) == 1, (quantity, t)
    return rows.iloc[0]


@pytest.fixture
def rectangle() -> Lineage:
    """Four cells at the corners of a 6 × 2 µm rectangle in a plane, all moving +1 µm in x per
    frame for three frames; the cell at (y=1, x=3) divides after frame 1 into two daughters
    0.5 µm either side of its path in y."""
    rows, edges = [], []
    corners = [(-1.0, -3.0), (-1.0, 3.0), (1.0, -3.0), (1.0, 3.0)]
    ids = {}
    for t in range(3):
        for c, (y, x) in enumerate(corners):
            if c == 3 and t == 2:
                continue
            ids[(t, c)] = len(rows)
            rows.append({"t": t, "z": 0.0, "y": y, "x": x + t})
            if t > 0:
                edges.append((ids[(t - 1, c)], ids[(t, c)]))
    for dy in (-0.5, 0.5):  # daughters of cell 3 at frame 2
        rows.append({"t": 2, "z": 0.0, "y": 1.0 + dy, "x": 3.0 + 2})
        edges.append((ids[(1, 3)], len(rows) - 1))
    nodes = pd.DataFrame(rows)
    return Lineage(nodes, pd.DataFrame(edges, columns=["source", "target"]), frame_interval_h=DT)


def test_hand_computed_values(rectangle: Lineage) -> None:
    table = measure(rectangle, settings=HAND)
    assert [value(table, "cell_count", t)["value"] for t in (0, 1, 2)] == [4, 4, 5]
    assert value(table, "divisions", 1)["value"] == 1
    assert value(table, "divisions", 0)["value"] == 0
    # one division among 4 + 4 cells at risk over two frame intervals of 0.5 h
    assert value(table, "division_rate_per_h")["value"] == pytest.approx(1 / (8 * DT))
    assert value(table, "division_rate_per_h", 1)["value"] == pytest.approx(1 / (4 * DT))
    # corners at x = ±3, y = ±1 (2D): variances 9 and 1; uniform-ellipse semi-axes 2·sqrt(var)
    assert value(table, "axis_1_um", 0)["value"] == pytest.approx(6.0)
    assert value(table, "axis_2_um", 0)["value"] == pytest.approx(2.0)
    assert value(table, "elongation", 0)["value"] == pytest.approx(3.0)
    assert abs(value(table, "direction_x", 0)["value"]) == pytest.approx(1.0)
    assert value(table, "radius_of_gyration_um", 0)["value"] == pytest.approx(math.sqrt(10))
    assert value(table, "nearest_neighbour_um", 0)["value"] == pytest.approx(2.0)
    # every link moves 1 µm in x per 0.5 h; the division links (a mitotic jump) are left out
    assert value(table, "mean_speed_um_per_h", 0)["value"] == pytest.approx(2.0)
    assert value(table, "mean_speed_um_per_h", 1)["value"] == pytest.approx(2.0)
    # exact links and detections: counts carry no uncertainty
    count = value(table, "cell_count", 2)
    assert count["lower"] == count["upper"] == 5
    assert set(table["unit"][table["quantity"] == "axis_1_um"]) == {"µm"}


def test_cell_cycle_from_complete_cycles() -> None:
    # mother A (t0-1) divides; daughter B lives t2-4 and divides; C is lost after t3
    nodes = pd.DataFrame({"t": [0, 1, 2, 2, 3, 3, 4, 5, 5],
                          "z": [0.0] * 9,
                          "y": [0, 0, -1, 1, -1, 1, -1, -2, 0.0],
                          "x": [0.0] * 9})
    edges = pd.DataFrame({"source": [0, 1, 1, 2, 3, 4, 6, 6],
                          "target": [1, 2, 3, 4, 5, 6, 7, 8]})
    table = measure(Lineage(nodes, edges, frame_interval_h=0.25), settings=HAND)
    # B is born at frame 2 and last seen before division at frame 4: 3 frames = 0.75 h
    assert value(table, "cell_cycle_h")["value"] == pytest.approx(0.75)


def test_intervals_widen_with_tracking_uncertainty(rectangle: Lineage) -> None:
    doubtful = rectangle.with_edges(rectangle.edges.assign(probability=0.6))
    certain = measure(rectangle, settings=HAND)
    uncertain = measure(doubtful, settings=HAND)

    def width(table: pd.DataFrame, quantity: str) -> float:
        return value(table, quantity)["upper"] - value(table, quantity)["lower"]

    assert width(uncertain, "mean_speed_um_per_h") >= width(certain, "mean_speed_um_per_h")
    assert value(uncertain, "divisions", 1)["lower"] == 0  # both daughter links may be wrong
    assert not table_has_nan(uncertain)


def table_has_nan(table: pd.DataFrame) -> bool:
    return bool(table[["value", "lower", "upper"]].isna().to_numpy().any())


def test_bad_input_gives_clear_messages(rectangle: Lineage) -> None:
    one_frame = Lineage(rectangle.nodes[rectangle.nodes["t"] == 0], pd.DataFrame(
        {"source": [], "target": []}, dtype=np.int64), frame_interval_h=DT)
    with pytest.raises(InputError, match="at least two"):
        measure(one_frame)
    no_units = Lineage(rectangle.nodes, rectangle.edges)
    with pytest.raises(InputError, match="no frame interval"):
        measure(no_units)
    with pytest.raises(InputError, match="unknown landmark"):
        measure(rectangle, settings=MeasureSettings(landmark="tip"))
    no_divisions = rectangle.with_edges(rectangle.edges.iloc[:-2])
    with pytest.warns(UserWarning, match="no divisions"):
        table = measure(no_divisions, settings=HAND)
    rate = value(table, "division_rate_per_h")
    assert rate["value"] == 0 and rate["upper"] > 0
    assert not table_has_nan(table)
    assert "cell_cycle_h" not in set(table["quantity"])


@pytest.mark.parametrize("seed", [3, 4])
def test_simulated_truth_matches_generator(seed: int) -> None:
    """Division rate and speed of simulated cells fall within their reported intervals.

    Crowding is switched off (repulsion rate 0) so that the speed has a closed form.
    """
    config = SynthConfig(frames=30, shape=(40, 160, 160), voxel_size_um=(1.0, 0.5, 0.5),
                         frame_interval_h=0.5, n_cells=40, cycle_mean_h=8.0, cycle_shape=8.0,
                         speed_um_per_h=2.0, persistence_h=0.5, margin_um=0.0,
                         repulsion_rate_per_h=0.0, seed=seed)
    truth = simulate_cells(config)
    table = measure(truth, settings=MeasureSettings(n_draws=200))
    # steady exponential growth with gamma(k, θ) cycles: rate λ solves (1 + λθ)^-k = 1/2
    theta = config.cycle_mean_h / config.cycle_shape
    growth_rate = (2 ** (1 / config.cycle_shape) - 1) / theta
    rate = value(table, "division_rate_per_h")
    assert rate["lower"] <= growth_rate <= rate["upper"]
    # an Ornstein-Uhlenbeck velocity seen through displacements over one frame interval
    tau, dt, v_rms = config.persistence_h, config.frame_interval_h, config.speed_um_per_h
    per_axis = v_rms**2 / 3 * 2 * tau**2 * (dt / tau - 1 + math.exp(-dt / tau))
    expected_speed = math.sqrt(per_axis) * math.sqrt(8 / math.pi) / dt  # mean of a chi(3)
    speed = value(table, "mean_speed_um_per_h")
    assert speed["lower"] <= expected_speed <= speed["upper"]


@pytest.mark.realdata
def test_real_embryo_counts_and_report(ce_geff_path, tmp_path) -> None:
    from labloop.report import write_report

    ce = Lineage.from_geff(ce_geff_path, voxel_size_um=CE_VOXEL_SIZE_UM,
                           frame_interval_h=CE_FRAME_INTERVAL_H)
    table = measure(ce, settings=MeasureSettings(n_draws=20))
    counts = wide(table).set_index("t")["cell_count"]
    per_frame = ce.nodes.groupby("t").size()
    assert counts.iloc[0] == per_frame.iloc[0] and counts.iloc[-1] == per_frame.iloc[-1]
    assert value(table, "divisions", 0)["value"] >= 0
    assert wide(table)["divisions"].sum() == ce.n_divisions
    path = write_report(tmp_path / "report", ce, table, title="C. elegans")
    html = path.read_text()
    assert html.count("data:image/png;base64,") == 3
    assert (tmp_path / "report" / "figure_01.png").stat().st_size > 20_000
