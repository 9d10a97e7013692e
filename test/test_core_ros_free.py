"""The core library imports and works in an interpreter where rclpy cannot be imported."""

from __future__ import annotations

import ast
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
    result = subprocess.run([sys.executable, "-c", BLOCK_ROS_AND_IMPORT_CORE], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 2  # every core module was imported


def test_the_blocker_really_blocks_rclpy():
    """Guard against a blocker that blocks nothing (the test above could not fail then)."""
    probe = BLOCK_ROS_AND_IMPORT_CORE + "\nimport rclpy\n"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "blocked in this test: rclpy" in result.stderr


def imported_modules(path) -> list[str]:
    """Every module a file imports, at the top and inside functions (lazy imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the layering scan needs absolute ones)"
            found.append(node.module)
    return found


def test_core_imports_only_core():
    """core/ is the library under everything: it imports no package module outside core/ and no ROS."""
    outside = []
    for path in sorted((REPO / "tactile_pose_refiner" / "core").rglob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")
            if top[0] == "rclpy" or (top[0] == "tactile_pose_refiner" and top[1:2] != ["core"]):
                outside.append(f"{path.relative_to(REPO)}: {module}")
    assert not outside, "core/ imports outside core/:\n" + "\n".join(outside)


def test_the_layering_scan_sees_lazy_imports(tmp_path):
    source = "def f():\n    from tactile_pose_refiner.sim.episode import EpisodeGenerator\n"
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    assert imported_modules(probe) == ["tactile_pose_refiner.sim.episode"]
