"""Test isolation for ROS: every pytest process gets its own DDS domain on localhost and a
private log directory, so concurrent runs on one machine never see each other."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pytest

from tactile_pose_refiner.graph import isolated_ros_environment

REPO = Path(__file__).resolve().parents[1]
_session = contextlib.ExitStack()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.pop("TPR_CATALOG", None)  # the tests use the bundled catalog, not the user's own
    log_dir = Path(_session.enter_context(tempfile.TemporaryDirectory(prefix="tpr-test-ros-log-")))
    os.environ.update(_session.enter_context(isolated_ros_environment(log_dir)))


def pytest_unconfigure(config: pytest.Config) -> None:
    _session.close()


@pytest.fixture
def ros_env(tmp_path: Path):
    """Environment for node processes of one test: a fresh domain id, logs under tmp_path."""
    with isolated_ros_environment(tmp_path / "ros-log") as env:
        yield env
