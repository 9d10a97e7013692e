"""The command line refuses a count or an amount that cannot be (zero frames, a negative soak, a
massless object) with a usage error naming the argument, and an episode it cannot read (a
recording cut short) with its name, before anything runs."""

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


@pytest.mark.parametrize("command", [["bench", "--frames", "1", "--methods", "initial"], ["track"], ["identify-mass"]])
def test_an_episode_cut_short_is_named_before_the_run(command, tmp_path, capsys):
    """A truncated MCAP (no footer) used to end each command in a traceback at that episode."""
    from tactile_pose_refiner.io.episode_bag import write_episode

    import scenes

    _, frames = scenes.generator().replay(
        "005_tomato_soup_can", scenes.stored_grasp("005_tomato_soup_can"), steps=2, seed=0
    )
    episode = tmp_path / "data" / "cut"
    write_episode(episode, list(frames))
    mcap = next(episode.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    assert tpr([command[0], "--data", str(tmp_path / "data"), *command[1:]]) == 2
    assert f"cannot read {episode}" in capsys.readouterr().err
