"""The core library imports and works in an interpreter where rclpy cannot be imported."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import REPO

BLOCK_ROS_AND_IMPORT_CORE = textwrap.dedent("""
    import importlib, pkgutil, sys

    class BlockRos:
        BLOCKED = ("rclpy", "rosidl_runtime_py", "std_msgs", "sensor_msgs", "geometry_msgs",
                   "tactile_pose_refiner.msg", "tactile_pose_refiner.nodes")
        def find_spec(self, name, path=None, target=None):
            if name.startswith(self.BLOCKED):
                raise ImportError(f"blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, BlockRos())
    import tactile_pose_refiner.core as core
    names = [m.name for m in pkgutil.walk_packages(core.__path__, "tactile_pose_refiner.core.")]
    for name in names:
        importlib.import_module(name)
    from tactile_pose_refiner.core.resources import load_config
    assert load_config("tactile_sim")["tactile_sim_node"]["ros__parameters"]["rate_hz"] > 0
    print(len(names))
""")


def test_core_imports_without_rclpy():
    result = subprocess.run([sys.executable, "-c", BLOCK_ROS_AND_IMPORT_CORE], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 2  # every core module was imported


def test_the_blocker_really_blocks_rclpy():
    """Guard against a blocker that blocks nothing (the test above could not fail then)."""
    probe = BLOCK_ROS_AND_IMPORT_CORE + "\nimport rclpy\n"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "blocked in this test: rclpy" in result.stderr
