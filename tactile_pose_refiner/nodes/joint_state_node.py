"""joint_state_node: Allegro JointState (either driver naming) -> the hand's state for the
other nodes.

Subscribes `/joint_states` (sensor_msgs/JointState, SensorDataQoS). Publishes
`hand/joint_states` (the 16 URDF joints, same stamp; what tactile_node and refiner_node use)
and `hand/link_poses` (geometry_msgs/PoseArray of the links sorted by name, as logged at start,
in the hand base frame), and broadcasts TF base -> link where tf2_ros is
importable. A state that lacks hand joints or holds NaN is reported on /diagnostics and not
forwarded.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseArray, TransformStamped
from sensor_msgs.msg import JointState

from tactile_pose_refiner.core.scene.kinematics import HandInputError, HandKinematics
from tactile_pose_refiner.nodes.common import OUTPUT_QOS, RELIABLE_INPUTS, GraphNode, default_topic, run_node, stale_by
from tactile_pose_refiner.nodes.conversions import matrix_to_pose_msg

PARAMETERS = {
    **RELIABLE_INPUTS,
    "base_frame": ("base_link", "hand base frame id of the link poses and TF"),
    "max_age_s": (0.0, "drop joint states older than this against the node clock [s]; 0: off"),
    "publish_tf": (True, "broadcast base -> link transforms when tf2_ros is importable"),
}


class JointStateNode(GraphNode):
    def __init__(self) -> None:
        super().__init__("joint_state_node", PARAMETERS)
        self.hand = HandKinematics.from_config()  # numpy FK: this node never needs torch
        self.joints_pub = self.create_publisher(JointState, "hand/joint_states", OUTPUT_QOS)
        self.poses_pub = self.create_publisher(PoseArray, "hand/link_poses", OUTPUT_QOS)
        self.tf = self._tf_broadcaster() if self.params["publish_tf"] else None
        self.create_subscription(JointState, default_topic("joint_states"), self.on_joint_state, self.inputs)
        self.get_logger().info(
            f"link pose order: {sorted(self.hand.link_poses(np.zeros(len(self.hand.joint_names))))}; "
            f"TF {'on' if self.tf else 'off (tf2_ros not importable)'}"
        )

    def _tf_broadcaster(self):
        try:
            from tf2_ros import TransformBroadcaster
        except ImportError:
            return None
        return TransformBroadcaster(self)

    def on_joint_state(self, msg: JointState) -> None:
        stale = stale_by(self, msg.header.stamp, self.params["max_age_s"])
        if stale is not None:
            self.diagnostics.report("warn", f"stale input: joint state is {stale:.2f} s off the clock")
            return
        try:
            q = self.hand.joint_vector(list(msg.name), list(msg.position))
        except HandInputError as exc:
            self.diagnostics.report("error", f"unusable joint state: {exc}")
            return
        self.joints_pub.publish(JointState(header=msg.header, name=list(self.hand.joint_names), position=q.tolist()))
        poses = self.hand.link_poses(q)
        names = sorted(poses)
        header = msg.header.__class__(stamp=msg.header.stamp, frame_id=self.params["base_frame"])
        self.poses_pub.publish(PoseArray(header=header, poses=[matrix_to_pose_msg(poses[n]) for n in names]))
        if self.tf is not None:
            self.tf.sendTransform([self._transform(header, name, poses[name]) for name in names])
        self.diagnostics.report("ok", "publishing hand state")

    @staticmethod
    def _transform(header, child: str, matrix) -> TransformStamped:
        pose = matrix_to_pose_msg(matrix)
        transform = TransformStamped(header=header, child_frame_id=child)
        transform.transform.translation.x = pose.position.x
        transform.transform.translation.y = pose.position.y
        transform.transform.translation.z = pose.position.z
        transform.transform.rotation = pose.orientation
        return transform


def main(args: list[str] | None = None) -> int:
    return run_node(JointStateNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
