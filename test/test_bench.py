"""`tpr bench` at CI size: a real rosbag2 episode of two frames, the baselines and the full
method at a few iterations, the JSON of SPEC §8 and the report's files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tactile_pose_refiner.bench import refine_bench
from tactile_pose_refiner.io.episode_bag import write_episode

import scenes


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("episodes")
    _, frames = scenes.generator().replay(
        "005_tomato_soup_can", scenes.stored_grasp("005_tomato_soup_can"), steps=2, seed=3
    )
    write_episode(folder / "005_tomato_soup_can_000", frames)
    return folder


@pytest.mark.slow
def test_bench_writes_the_tables_json_and_report(episodes, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = refine_bench.main(
        [
            "--data",
            str(episodes),
            "--methods",
            "initial,icp,icp_cp,ours@8,physics@8",
            "--noise",
            "paper",
            "--workers",
            "1",
            "--json",
            str(out),
            "--report",
            str(tmp_path / "report"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Method" in printed and "ours@8" in printed and "[2.21]" in printed  # the paper beside
    assert "SD cm" in printed and "SR %" in printed
    document = json.loads(out.read_text())
    methods = document["methods"]
    assert set(methods) == {"initial", "icp", "icp_cp", "ours@8", "physics@8"}
    for row in methods.values():
        assert {
            "pe_cm",
            "oe_deg",
            "ca_cm2",
            "iv_cm3",
            "dca_cm2",
            "div_cm3",
            "ms_per_frame",
            "ms_median_per_frame",
            "n_frames",
            "sd_cm",
            "sr",
        } <= set(row)
        assert row["n_frames"] == 2 and all(np.isfinite(row[k]) for k in ("pe_cm", "oe_deg", "iv_cm3", "sd_cm"))
        assert row["sd_cm"] >= 0.0 and row["sr"] in (0.0, 50.0, 100.0)  # SR: the share of the 2 frames held
        assert row["oe_sym_deg"] <= row["oe_deg"] + 1e-9  # the truth itself is among its equivalents
    initial, ours = methods["initial"], methods["ours@8"]
    assert initial["ms_per_frame"] == 0.0 and ours["ms_per_frame"] > 0.0
    assert initial["pe_cm"] == pytest.approx(2.21, rel=0.9)  # two draws of the paper's noise
    assert ours["pe_cm"] < initial["pe_cm"]  # eight iterations already help
    physics = methods["physics@8"]
    assert physics["div_cm3"] <= initial["div_cm3"] + 1e-6  # physics never adds intersection
    records = document["records"]
    assert len(records) == 10 and {r["noise"] for r in records} == {"paper"}
    # every method started from the same initial pose on a frame
    for frame in (0, 1):
        starts = {json.dumps(r["T_initial"]) for r in records if r["frame"] == frame}
        assert len(starts) == 1
    report = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert "convergence_paper.png" in report and "per_object_paper.png" in report  # one object: plotted too
    assert sum(name.startswith("overlay_paper_005_tomato_soup_can_000") for name in report) == 2


def test_bench_refuses_unknown_methods_and_settings(episodes, capsys):
    assert refine_bench.main(["--data", str(episodes), "--methods", "nonsense"]) == 2
    assert "unknown method 'nonsense'" in capsys.readouterr().err
    assert refine_bench.main(["--data", str(episodes), "--methods", "estimator", "--estimator", "magic"]) == 2
    assert "unknown initial-pose setting(s) ['magic']" in capsys.readouterr().err
    assert refine_bench.main(["--data", str(episodes), "--noise", "huge"]) == 2
    assert refine_bench.main(["--data", str(episodes / "missing")]) == 2


def test_frames_spread_over_the_episode():
    assert refine_bench.frame_indices(100, 5) == [0, 25, 50, 74, 99]
    assert refine_bench.frame_indices(3, 20) == [0, 1, 2]
