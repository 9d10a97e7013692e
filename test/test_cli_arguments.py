"""The command line refuses a count or an amount that cannot be (zero frames, a negative soak, a
massless object) with a usage error naming the argument, before anything runs."""

from __future__ import annotations

import pytest

from tactile_pose_refiner.cli import main as tpr


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["soak", "--minutes", "-1"], "argument --minutes: must be above 0, got -1"),
        (["generate", "--steps", "0", "--out", "OUT"], "argument --steps: must be above 0, got 0"),
        (["generate", "--episodes", "two", "--out", "OUT"], "argument --episodes: not a number: 'two'"),
        (["add-object", "m.obj", "--id", "m", "--mass", "0", "--catalog", "c.yaml"], "--mass: must be above 0"),
        (["metrics", "--repeats", "0"], "argument --repeats: must be above 0"),
    ],
)
def test_a_count_or_amount_that_cannot_be_is_a_usage_error(argv, said, tmp_path, capsys):
    argv = [str(tmp_path / arg) if arg == "OUT" else arg for arg in argv]
    with pytest.raises(SystemExit) as stopped:
        tpr(argv)
    assert stopped.value.code == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "OUT").exists()
