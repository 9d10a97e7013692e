"""estimator_node mode `external`: another estimator's PoseStamped, PoseWithCovarianceStamped or
Detection3DArray (Isaac ROS FoundationPose) becomes the initial pose; unusable ones are named."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

from tactile_pose_refiner.nodes.common import LATCHED, default_topic
from tactile_pose_refiner.nodes.external_pose import external_message_class, external_pose

CAMERA = "camera_color_optical_frame"


def pose_with_covariance(x: float, qw: float = 1.0) -> PoseWithCovarianceStamped:
    msg = PoseWithCovarianceStamped()
    msg.header.frame_id = CAMERA
    msg.pose.pose.position.x, msg.pose.pose.position.z = x, 0.5
    msg.pose.pose.orientation.w = qw
    msg.pose.covariance = np.diag([1e-4] * 3 + [1e-2] * 3).ravel().tolist()
    return msg


def detection(class_id: str, score: float, x: float):
    """A vision_msgs/Detection3D's fields (vision_msgs has no wheel here)."""
    pose = pose_with_covariance(x).pose
    hypothesis = SimpleNamespace(class_id=class_id, score=score)
    return SimpleNamespace(
        header=SimpleNamespace(frame_id=""), results=[SimpleNamespace(hypothesis=hypothesis, pose=pose)]
    )


def test_poses_with_and_without_covariance_and_what_is_refused():
    found = external_pose(pose_with_covariance(0.1), None)
    assert found.pose.position.x == 0.1 and found.covariance[0, 0] == pytest.approx(1e-4)
    plain = PoseStamped()
    plain.header.frame_id = CAMERA
    assert external_pose(plain, None).covariance is None
    assert "zero quaternion" in external_pose(pose_with_covariance(0.1, qw=0.0), None)
    unframed = pose_with_covariance(0.1)
    unframed.header.frame_id = ""
    assert "no frame id" in external_pose(unframed, None)


def test_a_detection_array_gives_the_best_detection_of_the_object():
    array = SimpleNamespace(
        header=SimpleNamespace(frame_id=CAMERA),
        detections=[detection("mug", 0.99, 0.3), detection("drill", 0.6, 0.1), detection("drill", 0.9, 0.2)],
    )
    found = external_pose(array, "drill")
    assert found.pose.position.x == 0.2 and found.score == 0.9 and found.header.frame_id == CAMERA
    assert "no detection of 'box'" in external_pose(array, "box") and "'mug'" in external_pose(array, "box")
    assert external_pose(array, None).startswith("waiting for input")


def test_unknown_and_unavailable_types_are_named():
    with pytest.raises(ValueError, match="external_type must be one of"):
        external_message_class("Odometry")
    try:
        import vision_msgs  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="vision-msgs"):
            external_message_class("Detection3DArray")


def test_the_node_passes_an_external_pose_on_as_the_initial_pose(ros_env):
    from tactile_pose_refiner.nodes.estimator_node import EstimatorNode

    args = ["tpr", "--ros-args", "-p", "mode:=external", "-p", "external_type:=PoseWithCovarianceStamped"]
    rclpy.init(args=args, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        estimator, peer = EstimatorNode(), rclpy.create_node("external_estimator")
        executor = SingleThreadedExecutor()
        for node in (estimator, peer):
            executor.add_node(node)
        poses, covariances, sources = [], [], []
        peer.create_subscription(PoseStamped, "estimator/initial_pose", poses.append, 10)
        peer.create_subscription(PoseWithCovarianceStamped, "estimator/initial_pose_cov", covariances.append, 10)
        peer.create_subscription(String, "estimator/source", sources.append, LATCHED)
        peer.create_publisher(String, default_topic("object_id"), LATCHED).publish(String(data="005_tomato_soup_can"))
        external = peer.create_publisher(PoseWithCovarianceStamped, "external/initial_pose", 10)
        sent = pose_with_covariance(0.05, qw=2.0)  # a quaternion not of unit length: passed on normalised
        deadline = time.monotonic() + 20
        while not (poses and sources) and time.monotonic() < deadline:  # the latched source may come later
            external.publish(sent)
            executor.spin_once(timeout_sec=0.1)
        for _ in range(10):
            executor.spin_once(timeout_sec=0.05)
        executor.shutdown()
        estimator.destroy_node()
        peer.destroy_node()
    finally:
        rclpy.shutdown()
    assert poses, "no initial pose came"
    assert poses[0].header.frame_id == CAMERA and poses[0].pose.position.x == pytest.approx(0.05)
    assert poses[0].pose.orientation.w == pytest.approx(1.0)
    assert covariances[0].pose.covariance[0] == pytest.approx(1e-4)
    assert sources and sources[-1].data.startswith("external: PoseWithCovarianceStamped on external/initial_pose")
