"""The stable Python API of DESIGN.md, and the main job end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import labloop


def test_stable_api_names_are_the_step_functions() -> None:
    import labloop.measure.api
    import labloop.track.api

    assert callable(labloop.measure) and labloop.measure.__name__ == "measure"
    assert callable(labloop.track) and labloop.track.__name__ == "track"
    assert callable(labloop.evaluate) and callable(labloop.open_experiment)
    empty = labloop.detect(np.zeros((1, 8, 32, 32), np.uint16), voxel_size_um=(2, 0.5, 0.5),
                           progress=False)
    assert len(empty) == 0 and {"t", "z", "y", "x", "score"} <= set(empty.columns)


@pytest.mark.slow
def test_demo_runs_the_loop_and_writes_the_report(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "labloop", "demo", "--out", str(tmp_path),
                             "--no-open"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "Observed versus predicted tissue" in html and "Recalibrated model parameters" in html
    assert "Evaluation against ground truth" in html
    scores = json.loads(html.split("<pre>")[1].split("</pre>")[0].replace("&quot;", '"'))
    assert scores["detection"]["f1"] > 0.9
    assert scores["tracking"]["edge_f1"] > 0.9
    experiment = labloop.open_experiment(tmp_path / "sample.zarr")
    for result_name in ("detections", "tracks.geff", "morphometrics", "fit/parameters",
                        "prediction", "predicted_morphometrics"):
        assert experiment.has(result_name)
    assert experiment.record("morphometrics")["params"]["tracker_samples"] == 20
    fitted = experiment.read_table("fit/parameters").set_index("name")
    # the sample's cells divide about every 9 h: the model's λ = λ_max/2 lands near 0.08/h
    assert 0.03 < fitted.loc["division.max_rate_per_h", "value"] / 2 < 0.2
