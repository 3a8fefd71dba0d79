"""Metrics against ground truth: hand-built lineages with hand-counted scores."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labloop.errors import InputError
from labloop.evaluate import (
    EvaluationSettings,
    calibration,
    compare_lineages,
    detection_metrics,
    ece_sampling_spread,
    edge_correctness,
    evaluate,
    match_detections,
    share_of_wrong_among_most_doubtful,
    tracking_metrics,
)
from labloop.lineage import Lineage
from tests.conftest import CE_FRAME_INTERVAL_H, CE_VOXEL_SIZE_UM

RADIUS_UM = 2.0
#: CTC weights (Matula et al. 2015): FN vertex 10, FN edge 1.5, FP edge 1, wrong semantics 1
CTC_FN_NODE, CTC_FN_EDGE, CTC_FP_EDGE, CTC_WS_EDGE = 10.0, 1.5, 1.0, 1.0


# --------------------------------------------------------------------------- data
# Two tracks 20 µm apart plus two lone nuclei; 10 links, 1 division:
#   a0 → a1 → a2 ─┬→ b3 → b4          (6 links, division at a2)
#                 └→ c3 → c4
#   d0 → d1 → d2 → d3 → d4            (4 links)
#   e1, e2                            (lone nuclei, no link)
NODES = {
    "a0": (0, 0.0, 0.0), "a1": (1, 0.0, 0.0), "a2": (2, 0.0, 0.0),
    "b3": (3, 5.0, 0.0), "b4": (4, 6.0, 0.0), "c3": (3, -5.0, 0.0), "c4": (4, -6.0, 0.0),
    "d0": (0, 0.0, 20.0), "d1": (1, 0.0, 20.0), "d2": (2, 0.0, 20.0),
    "d3": (3, 0.0, 20.0), "d4": (4, 0.0, 20.0),
    "e1": (1, 0.0, 40.0), "e2": (2, 0.0, 40.0),
}
EDGES = [("a0", "a1"), ("a1", "a2"), ("a2", "b3"), ("a2", "c3"), ("b3", "b4"), ("c3", "c4"),
         ("d0", "d1"), ("d1", "d2"), ("d2", "d3"), ("d3", "d4")]
ID = {name: 100 + 7 * k for k, name in enumerate(NODES)}  # arbitrary, non-contiguous ids


def make_lineage(edges=EDGES, moved: dict[str, tuple[float, float]] | None = None,
                 extra_nodes: dict[str, tuple[int, float, float]] | None = None) -> Lineage:
    """The hand lineage, optionally with other edges, moved or added nodes."""
    nodes = {**NODES, **(extra_nodes or {})}
    rows = []
    for name, (t, y, x) in nodes.items():
        dy, dx = (moved or {}).get(name, (0.0, 0.0))
        rows.append({"t": t, "z": 1.0, "y": y + dy, "x": x + dx})
    ids = {**ID, **{name: 1000 + k for k, name in enumerate(extra_nodes or {})}}
    table = pd.DataFrame(rows, index=[ids[name] for name in nodes])
    links = pd.DataFrame({"source": [ids[s] for s, _ in edges],
                          "target": [ids[t] for _, t in edges]})
    return Lineage(table, links, frame_interval_h=0.25)


def empty_lineage() -> Lineage:
    return Lineage(pd.DataFrame({"t": [], "z": [], "y": [], "x": []}),
                   pd.DataFrame({"source": [], "target": []}))


def table(points: list[tuple[int, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(points, columns=["t", "z", "y", "x"])


@pytest.fixture(scope="module")
def truth() -> Lineage:
    return make_lineage()


N_NODES, N_EDGES = len(NODES), len(EDGES)
AOGM_0 = CTC_FN_NODE * N_NODES + CTC_FN_EDGE * N_EDGES  # TRA's reference


# ---------------------------------------------------------------- detections
def test_detection_matching_is_one_to_one_and_prefers_the_closer() -> None:
    truth = table([(0, 0.0, 0.0, 0.0)])
    predicted = table([(0, 0.0, 0.0, 1.5), (0, 0.0, 0.0, 0.5)])
    matches = match_detections(truth, predicted, radius_um=RADIUS_UM)
    assert matches[["truth", "predicted"]].values.tolist() == [[0, 1]]
    assert matches["distance_um"].tolist() == [0.5]
    scores = detection_metrics(truth, predicted, RADIUS_UM)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 1, 0)
    assert scores["precision"] == 0.5 and scores["recall"] == 1.0
    assert scores["f1"] == pytest.approx(2 / 3)


def test_detection_matching_maximises_matches_before_distance() -> None:
    # A–a is the closest pair, but taking it leaves B unmatched; A–b + B–a gives 2 matches
    truth = table([(0, 0.0, 0.0, 0.0), (0, 0.0, 0.0, 2.0)])          # A, B
    predicted = table([(0, 0.0, 0.0, 0.1), (0, 0.0, 0.0, -1.9)])     # a, b
    matches = match_detections(truth, predicted, radius_um=RADIUS_UM)
    assert sorted(matches[["truth", "predicted"]].values.tolist()) == [[0, 1], [1, 0]]
    assert detection_metrics(truth, predicted, RADIUS_UM)["f1"] == 1.0


def test_detection_matching_uses_index_labels_and_frames() -> None:
    truth = table([(0, 0.0, 0.0, 0.0), (1, 0.0, 0.0, 0.0)]).set_axis([10, 20])
    predicted = table([(1, 0.0, 0.5, 0.0), (2, 0.0, 0.0, 0.0)]).set_axis([7, 8])
    matches = match_detections(truth, predicted, radius_um=RADIUS_UM)
    assert matches[["truth", "predicted", "t"]].values.tolist() == [[20, 7, 1]]


@pytest.mark.parametrize(("radius", "matched"), [(5.0, 1), (4.999, 0), (5.001, 1)])
def test_radius_boundary_is_inclusive(radius: float, matched: int) -> None:
    truth = table([(3, 0.0, 0.0, 0.0)])
    predicted = table([(3, 0.0, 3.0, 4.0)])  # exactly 5 µm away
    assert detection_metrics(truth, predicted, radius)["tp"] == matched


def test_detection_metrics_with_empty_inputs() -> None:
    none, one = table([]), table([(0, 0.0, 0.0, 0.0)])
    both_empty = detection_metrics(none, none, RADIUS_UM)
    assert (both_empty["precision"], both_empty["recall"], both_empty["f1"]) == (1.0, 1.0, 1.0)
    assert both_empty["mean_distance_um"] is None
    no_predictions = detection_metrics(one, none, RADIUS_UM)
    assert (no_predictions["precision"], no_predictions["recall"], no_predictions["f1"]) == (
        1.0, 0.0, 0.0)
    no_truth = detection_metrics(none, one, RADIUS_UM)
    assert (no_truth["precision"], no_truth["recall"], no_truth["f1"]) == (0.0, 1.0, 0.0)


def test_detection_inputs_are_checked() -> None:
    good = table([(0, 0.0, 0.0, 0.0)])
    with pytest.raises(InputError, match="lack the column"):
        detection_metrics(good.drop(columns="z"), good, RADIUS_UM)
    with pytest.raises(InputError, match="NaN"):
        detection_metrics(good, good.assign(x=np.nan), RADIUS_UM)
    with pytest.raises(InputError, match="whole numbers"):
        detection_metrics(good.assign(t=0.5), good, RADIUS_UM)
    with pytest.raises(InputError, match="radius"):
        detection_metrics(good, good, -1.0)


def test_matching_scales_to_an_embryo() -> None:
    rng = np.random.default_rng(1)
    n_frames, per_frame = 200, 125  # ~25k nuclei, as in a C. elegans embryo
    frames = np.repeat(np.arange(n_frames), per_frame)
    positions = rng.uniform(0, 60, (len(frames), 3))
    truth = pd.DataFrame({"t": frames, "z": positions[:, 0], "y": positions[:, 1],
                          "x": positions[:, 2]})
    predicted = truth.copy()
    predicted[["z", "y", "x"]] += rng.normal(0, 1.0, positions.shape)
    start = time.perf_counter()
    scores = detection_metrics(truth, predicted, radius_um=3.0)
    assert time.perf_counter() - start < 3.0
    assert scores["tp"] > 0.9 * len(truth)


# ---------------------------------------------------------------- tracking
def assert_perfect(scores: dict) -> None:
    for key, value in scores.items():
        if key.endswith(("precision", "recall", "f1")) or key in ("DET", "LNK", "TRA"):
            assert value == 1.0, key


def test_lineage_against_itself_scores_one(truth: Lineage) -> None:
    scores = tracking_metrics(truth, truth, RADIUS_UM)
    assert_perfect(scores)
    assert scores["wrong_links"] == 0 and scores["n_truth_edges"] == N_EDGES
    assert scores["n_truth_divisions"] == 1 and scores["correct_divisions"] == 1
    assert scores["AOGM"] == 0.0


def test_deleting_one_of_ten_links(truth: Lineage) -> None:
    predicted = make_lineage([e for e in EDGES if e != ("d1", "d2")])
    scores = tracking_metrics(truth, predicted, RADIUS_UM)
    assert scores["edge_recall"] == pytest.approx(0.9)
    assert scores["edge_precision"] == 1.0
    assert scores["edge_f1"] == pytest.approx(2 * 0.9 / 1.9)
    assert (scores["missed_links"], scores["wrong_links"]) == (1, 0)
    assert scores["division_f1"] == 1.0
    assert scores["LNK"] == pytest.approx(1 - CTC_FN_EDGE / (CTC_FN_EDGE * N_EDGES))
    assert scores["TRA"] == pytest.approx(1 - CTC_FN_EDGE / AOGM_0)


def test_adding_a_wrong_link(truth: Lineage) -> None:
    predicted = make_lineage([*EDGES, ("e1", "e2")])
    scores = tracking_metrics(truth, predicted, RADIUS_UM)
    assert scores["edge_precision"] == pytest.approx(10 / 11)
    assert scores["edge_recall"] == 1.0
    assert scores["wrong_links"] == 1
    assert scores["LNK"] == pytest.approx(1 - CTC_FP_EDGE / (CTC_FN_EDGE * N_EDGES))
    correct = edge_correctness(truth, predicted, RADIUS_UM)
    assert correct.index.equals(predicted.edges.index)
    assert correct.tolist() == [True] * N_EDGES + [False]


def test_removing_a_daughter_link_misses_the_division(truth: Lineage) -> None:
    predicted = make_lineage([e for e in EDGES if e != ("a2", "c3")])
    scores = tracking_metrics(truth, predicted, RADIUS_UM)
    assert scores["n_predicted_divisions"] == 0 and scores["missed_divisions"] == 1
    assert scores["division_recall"] == 0.0 and scores["division_f1"] == 0.0
    assert scores["division_precision"] == 1.0  # no division called, none wrong
    assert scores["edge_recall"] == pytest.approx(0.9)
    # the kept daughter link is no longer a mother→daughter link: wrong semantics
    assert scores["ctc_ws_edges"] == 1
    assert scores["LNK"] == pytest.approx(
        1 - (CTC_FN_EDGE + CTC_WS_EDGE) / (CTC_FN_EDGE * N_EDGES))


def test_moving_a_node_beyond_the_radius(truth: Lineage) -> None:
    predicted = make_lineage(moved={"d2": (10.0, 0.0)})
    scores = tracking_metrics(truth, predicted, RADIUS_UM)
    detection = detection_metrics(truth.nodes, predicted.nodes, RADIUS_UM)
    assert (detection["tp"], detection["fp"], detection["fn"]) == (N_NODES - 1, 1, 1)
    assert scores["matched_nodes"] == N_NODES - 1
    # both links touching d2 are lost on both sides
    assert scores["edge_recall"] == pytest.approx(8 / 10)
    assert scores["edge_precision"] == pytest.approx(8 / 10)
    assert (scores["ctc_fp_nodes"], scores["ctc_fn_nodes"]) == (1, 1)


def test_node_ids_need_not_be_positive(truth: Lineage) -> None:
    nodes = truth.nodes.set_axis(truth.nodes.index - 200)  # ids from -100 up, 0 included
    edges = truth.edges.assign(source=truth.edges["source"] - 200,
                               target=truth.edges["target"] - 200)
    shifted = Lineage(nodes.assign(t=nodes["t"] + 3), edges)  # frames need not start at 0
    assert 0 in shifted.nodes.index or (shifted.nodes.index < 0).any()
    assert_perfect(tracking_metrics(shifted, shifted, RADIUS_UM))


def test_last_frame_is_matched(truth: Lineage) -> None:
    last = int(truth.nodes["t"].max())
    comparison = compare_lineages(truth, truth, RADIUS_UM)
    matched_truth = truth.nodes.loc[comparison.node_matches["truth"], "t"]
    assert (matched_truth == last).sum() == (truth.nodes["t"] == last).sum()
    assert comparison.truth_edge_found.all() and comparison.predicted_edge_correct.all()


def test_division_one_frame_early_counts_with_a_buffer() -> None:
    # truth divides at m2; the prediction divides one frame early at m1 (extra node r2)
    nodes = {"m0": (0, 0.0, 0.0), "m1": (1, 0.0, 0.0), "m2": (2, 0.0, 0.0),
             "p3": (3, 5.0, 0.0), "q3": (3, -5.0, 0.0)}
    truth_edges = [("m0", "m1"), ("m1", "m2"), ("m2", "p3"), ("m2", "q3")]
    pred_nodes = {**nodes, "r2": (2, -4.0, 0.0)}
    pred_edges = [("m0", "m1"), ("m1", "m2"), ("m1", "r2"), ("m2", "p3"), ("r2", "q3")]

    def build(points: dict, links: list) -> Lineage:
        ids = {name: k for k, name in enumerate(points)}
        rows = [{"t": t, "z": 0.0, "y": y, "x": x} for t, y, x in points.values()]
        return Lineage(pd.DataFrame(rows),
                       pd.DataFrame({"source": [ids[s] for s, _ in links],
                                     "target": [ids[t] for _, t in links]}))

    scores = tracking_metrics(build(nodes, truth_edges), build(pred_nodes, pred_edges),
                              RADIUS_UM, division_frame_buffer=1)
    assert scores["division_recall"] == 0.0
    assert scores["division_recall_buffer1"] == 1.0
    assert scores["division_f1_buffer1"] == 1.0


def test_tracking_with_empty_lineages(truth: Lineage) -> None:
    empty = empty_lineage()
    assert_perfect(tracking_metrics(empty, empty, RADIUS_UM))
    nothing_found = tracking_metrics(truth, empty, RADIUS_UM)
    assert nothing_found["edge_recall"] == 0.0 and nothing_found["edge_f1"] == 0.0
    assert nothing_found["edge_precision"] == 1.0
    assert nothing_found["TRA"] == 0.0 and nothing_found["LNK"] == 0.0
    nothing_true = tracking_metrics(empty, truth, RADIUS_UM)
    assert nothing_true["edge_precision"] == 0.0 and nothing_true["wrong_links"] == N_EDGES
    assert not any(isinstance(v, float) and math.isnan(v) for v in nothing_true.values())


# ---------------------------------------------------------------- calibration
def test_perfectly_calibrated_probabilities_have_small_ece() -> None:
    rng = np.random.default_rng(42)
    p = rng.uniform(0, 1, 100_000)
    wrong = rng.uniform(0, 1, p.size) < p
    result = calibration(p, wrong)
    assert result["ece"] < 0.01
    assert sum(result["count"]) == p.size and len(result["bin_edges"]) == 11


def test_sampling_spread_of_the_ece_shrinks_like_one_over_root_n() -> None:
    rng = np.random.default_rng(7)
    few, many = rng.uniform(0, 0.6, 370), rng.uniform(0, 0.6, 37_000)
    spread_few, spread_many = ece_sampling_spread(few), ece_sampling_spread(many)
    # ≈ 0.03 for a few hundred divisions: an ECE target of 0.02 is below the noise there
    assert 0.02 < np.median(spread_few) < 0.06
    assert 7 < np.median(spread_few) / np.median(spread_many) < 13
    result = calibration(few, rng.uniform(0, 1, few.size) < few)
    assert result["ece_sampling_median"] == pytest.approx(np.median(spread_few))
    assert result["ece"] <= result["ece_sampling_p90"] + 0.03
    wrong_way = calibration(few, rng.uniform(0, 1, few.size) < 1 - few)
    assert wrong_way["ece"] > 3 * wrong_way["ece_sampling_p90"]


def test_overconfident_constant_predictor_ece_by_hand() -> None:
    p = np.full(1000, 0.05)          # "5 % of these links are wrong"
    wrong = np.arange(1000) < 300    # 30 % are
    result = calibration(p, wrong)
    assert result["ece"] == pytest.approx(0.25)
    assert result["count"][0] == 1000 and result["observed_error_rate"][0] == pytest.approx(0.3)
    assert result["mean_error_probability"][1] is None  # empty bin


def test_ece_two_bins_by_hand() -> None:
    # bin [0, 0.5): p = 0.1 (×4), 1 wrong → gap 0.15; bin [0.5, 1]: p = 0.9 (×6), 3 wrong → 0.4
    p = np.array([0.1] * 4 + [0.9] * 6)
    wrong = np.array([1, 0, 0, 0, 1, 1, 1, 0, 0, 0], dtype=bool)
    result = calibration(p, wrong, n_bins=2)
    assert result["ece"] == pytest.approx(0.4 * 0.15 + 0.6 * 0.4)
    assert result["count"] == [4, 6]


def test_wrong_in_top5pct_by_hand() -> None:
    p = np.linspace(0.0, 0.99, 40)             # top 5 % of 40 = the 2 largest
    wrong = np.zeros(40, dtype=bool)
    wrong[[39, 20, 3]] = True                  # one of the three wrong is in the top 2
    assert share_of_wrong_among_most_doubtful(p, wrong) == pytest.approx(1 / 3)
    assert calibration(p, wrong)["wrong_in_top5pct"] == pytest.approx(1 / 3)
    # all tied: the top 1 of 20 holds 4/20 of a wrong link on average → 0.05 of 4
    tied = np.arange(20) < 4
    assert share_of_wrong_among_most_doubtful(np.full(20, 0.5), tied) == pytest.approx(0.05)


def test_calibration_with_empty_or_bad_input() -> None:
    result = calibration(np.array([]), np.array([], dtype=bool))
    assert result["n"] == 0 and result["ece"] == 0.0 and result["wrong_in_top5pct"] == 1.0
    with pytest.raises(InputError, match="equal"):
        calibration(np.array([0.1, 0.2]), np.array([True]))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        calibration(np.array([1.5]), np.array([True]))


# ---------------------------------------------------------------- evaluate
def test_evaluate_combines_everything_as_json(truth: Lineage) -> None:
    predicted = make_lineage([*EDGES, ("e1", "e2")])
    edges = predicted.edges.assign(probability=0.9)
    edges.loc[edges.index[-1], "probability"] = 0.2     # the wrong link is doubted
    predicted = predicted.with_edges(edges)
    detections = table([(0, 1.0, 0.0, 0.0), (0, 1.0, 30.0, 30.0)])
    result = evaluate(truth, predicted=predicted, detections=detections, radius_um=RADIUS_UM,
                      settings=EvaluationSettings(division_frame_buffer=0, n_bins=5))
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert result["detection"]["source"] == "detections"
    assert (result["detection"]["tp"], result["detection"]["fp"]) == (1, 1)
    assert result["tracked_detection"]["f1"] == 1.0
    assert result["tracking"]["wrong_links"] == 1
    assert "division_f1_buffer1" not in result["tracking"]
    calib = result["calibration"]
    assert calib["n"] == N_EDGES + 1 and calib["n_wrong"] == 1
    assert calib["wrong_in_top5pct"] == 1.0
    assert len(calib["count"]) == 5


def test_evaluate_tracks_only_and_errors(truth: Lineage) -> None:
    result = evaluate(truth, predicted=truth, radius_um=RADIUS_UM)
    assert result["detection"]["source"] == "tracks" and result["detection"]["f1"] == 1.0
    assert result["tracking"]["edge_f1"] == 1.0 and result["tracking"]["TRA"] == 1.0
    assert "tracked_detection" not in result
    only_detections = evaluate(truth, detections=truth.nodes, radius_um=RADIUS_UM)
    assert set(only_detections) == {"radius_um", "truth", "detection"}
    with pytest.raises(InputError, match="nothing to evaluate"):
        evaluate(truth)
    empty = evaluate(empty_lineage(), predicted=empty_lineage())
    assert json.dumps(empty, allow_nan=False)


# ---------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def ce_truth(ce_geff_path: Path) -> Lineage:
    return Lineage.from_geff(ce_geff_path, voxel_size_um=CE_VOXEL_SIZE_UM,
                             frame_interval_h=CE_FRAME_INTERVAL_H)


@pytest.mark.realdata
def test_real_embryo_against_itself_and_with_links_removed(ce_truth: Lineage) -> None:
    start = time.perf_counter()
    scores = evaluate(ce_truth, predicted=ce_truth, radius_um=3.0)
    assert_perfect(scores["tracking"])
    assert scores["detection"]["f1"] == 1.0
    assert scores["tracking"]["n_truth_edges"] == ce_truth.n_edges
    rng = np.random.default_rng(0)
    dropped = rng.choice(ce_truth.n_edges, size=round(0.01 * ce_truth.n_edges), replace=False)
    thinned = ce_truth.with_edges(ce_truth.edges.drop(index=ce_truth.edges.index[dropped]))
    scores = tracking_metrics(ce_truth, thinned, radius_um=3.0)
    elapsed = time.perf_counter() - start
    assert scores["edge_recall"] == pytest.approx(0.99, abs=0.001)
    assert scores["edge_precision"] == 1.0
    assert elapsed < 60.0, f"two evaluations of the embryo took {elapsed:.1f} s"
