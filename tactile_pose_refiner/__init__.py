"""tactile_pose_refiner: physically plausible 6D pose refinement for an object held in an
Allegro hand with Xela skin, seen by a fixed RGB-D camera.

Layout (data flows top to bottom):
    core/    ROS-free library: scene, gradients, refinement, metrics (never imports rclpy)
    nodes/   thin rclpy adapters: parse message -> call core -> publish
    cli.py   the `tpr` command
"""

# The ROS build generates the message classes (`tactile_pose_refiner.msg`) into a package
# directory of the same name elsewhere on sys.path: the virtualenv's site-packages in
# development, `install/` in a colcon workspace. extend_path merges that directory into
# this package so `from tactile_pose_refiner.msg import TactileArray` works in both.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)


def _version() -> str:
    """package.xml's version: from the pip metadata, else (a colcon install) from the share dir."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(__name__)
    except PackageNotFoundError:
        import xml.etree.ElementTree as ElementTree

        from tactile_pose_refiner.core.resources import share_dir

        return ElementTree.parse(share_dir() / "package.xml").findtext("version").strip()


__version__ = _version()
