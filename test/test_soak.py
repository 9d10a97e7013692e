"""tpr soak's verdict on memory: a refinement's working memory comes and goes; a leak grows."""

from __future__ import annotations

from tactile_pose_refiner.soak import SoakResult


def soak_with(rss_mb: list[float]) -> SoakResult:
    result = SoakResult(first_pose_s=10.0)
    result.rss_mb["refiner_node"] = [(5.0 * i, mb) for i, mb in enumerate(rss_mb)]
    return result


def test_memory_that_comes_and_goes_between_samples_is_no_growth():
    oscillating = soak_with([600, 900] + [887, 953, 890, 947] * 10)  # measured: the refiner mid-refinement
    assert abs(oscillating.growth("refiner_node", warmup_s=60.0)) < 0.01


def test_rising_peaks_are_growth():
    leaking = soak_with([600, 900] + [887 + 5 * i for i in range(40)])
    assert leaking.growth("refiner_node", warmup_s=60.0) > 0.1
