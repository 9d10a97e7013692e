"""A robot user's build: `colcon build` of a clean copy of the package in a workspace, then
the installed package (messages, core, node launchers, share files) used from install/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

VENV = Path(sys.prefix)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colcon_ws")
    shutil.copytree(
        REPO,
        root / "src" / "tactile_pose_refiner",
        ignore=shutil.ignore_patterns(
            ".venv", "build", "install", "log", ".git", "__pycache__", ".pytest_cache", "*.egg-info"
        ),
    )
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV))
    result = subprocess.run(
        [
            str(VENV / "bin" / "colcon"),
            "build",
            "--event-handlers",
            "console_direct-",
            "--cmake-args",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=OFF",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


def installed_env(workspace: Path) -> dict[str, str]:
    """What `source install/setup.bash` sets for this package (PYTHONPATH first)."""
    prefix = workspace / "install" / "tactile_pose_refiner"
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    return dict(
        os.environ,
        PYTHONPATH=str(site),
        AMENT_PREFIX_PATH=f"{prefix}{os.pathsep}{VENV}",
        LD_LIBRARY_PATH=f"{prefix / 'lib'}{os.pathsep}{os.environ.get('LD_LIBRARY_PATH', '')}",
    )


@pytest.mark.slow
def test_colcon_install_holds_messages_code_launchers_and_share_files(workspace):
    prefix = workspace / "install" / "tactile_pose_refiner"
    for launcher in ("tpr", "tactile_sim_node", "topic_echo"):
        assert os.access(prefix / "lib" / "tactile_pose_refiner" / launcher, os.X_OK), launcher
    for shared in ("config/tactile_sim.yaml", "package.xml", "msg/TactileArray.msg"):
        assert (prefix / "share" / "tactile_pose_refiner" / shared).is_file(), shared
    probe = (
        "import tactile_pose_refiner as p, tactile_pose_refiner.msg as m\n"
        "from tactile_pose_refiner.core.resources import share_dir\n"
        "print(p.__file__); print(m.__file__); print(share_dir())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=workspace, capture_output=True, text=True, env=installed_env(workspace)
    )
    assert result.returncode == 0, result.stderr
    package_file, msg_file, share = result.stdout.split()
    assert package_file.startswith(str(prefix)) and msg_file.startswith(str(prefix))
    assert share == str(prefix / "share" / "tactile_pose_refiner")


@pytest.mark.slow
def test_installed_node_launcher_runs(workspace):
    """`ros2 run tactile_pose_refiner topic_echo` runs the launcher in lib/<package>."""
    launcher = workspace / "install" / "tactile_pose_refiner" / "lib" / "tactile_pose_refiner" / "topic_echo"
    result = subprocess.run(
        [
            sys.executable,
            str(launcher),
            "--ros-args",
            "-p",
            "count:=1",
            "-p",
            "timeout_s:=0.5",
            "-p",
            "topic:=/nothing/here",
        ],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=60,
        env=installed_env(workspace),
    )
    assert result.returncode == 3, result.stderr
    assert "timeout: 0 of 1 messages" in result.stderr
