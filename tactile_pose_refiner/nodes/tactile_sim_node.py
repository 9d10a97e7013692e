"""tactile_sim_node: publishes a configured TactileArray pattern at a fixed rate.

For bring-up without the skin (RViz wiring, graph tests): the taxels and their forces come
from parameters (config/tactile_sim.yaml), optional Gaussian noise in sensor units is added.
Publishes: `tactile` (tactile_pose_refiner/msg/TactileArray, SensorDataQoS).
"""

from __future__ import annotations

import numpy as np
from rclpy.qos import qos_profile_sensor_data

from tactile_pose_refiner.core.scene.skin import TactileInputError, TactileReading
from tactile_pose_refiner.msg import TactileArray
from tactile_pose_refiner.nodes.common import StoppableNode, declare_parameters, run_node
from tactile_pose_refiner.nodes.conversions import tactile_to_msg

PARAMETERS = {
    "rate_hz": (100.0, "publishing rate [Hz] (the Xela server streams at about 100 Hz)"),
    "frame_id": ("ah_base_link", "header frame id"),
    "link_names": (["link_13"], "hand link of each taxel"),
    "taxel_positions": ([0.0, 0.0, 0.0], "taxel centres in their link frame, x y z per taxel [m]"),
    "forces": ([0.0, 0.0, 0.0], "3-axis force per taxel, x y z per taxel [sensor units]"),
    "force_scale": (0.0, "sensor units -> newtons; 0 when uncalibrated"),
    "noise_std": (0.0, "Gaussian noise added to every force component [sensor units]"),
    "seed": (0, "noise seed"),
}


class TactileSimNode(StoppableNode):
    def __init__(self) -> None:
        super().__init__("tactile_sim_node")
        self.params = declare_parameters(self, PARAMETERS)
        count = len(self.params["link_names"])
        try:
            self.pattern = TactileReading(
                link_names=tuple(self.params["link_names"]),
                taxel_ids=np.arange(count),
                positions=np.asarray(self.params["taxel_positions"], dtype=np.float64),
                forces=np.asarray(self.params["forces"], dtype=np.float64),
                force_scale=float(self.params["force_scale"]),
            )
        except (TactileInputError, ValueError) as exc:
            self.get_logger().fatal(f"invalid tactile pattern parameters: {exc}")
            self.finish(2)
            return
        if self.params["rate_hz"] <= 0:
            self.get_logger().fatal(f"rate_hz must be > 0, got {self.params['rate_hz']}")
            self.finish(2)
            return
        self.rng = np.random.default_rng(self.params["seed"])
        self.publisher = self.create_publisher(TactileArray, "tactile", qos_profile_sensor_data)
        self.timer = self.create_timer(1.0 / self.params["rate_hz"], self.publish_reading)
        self.get_logger().info(
            f"publishing {count} taxels on {self.publisher.topic_name} at {self.params['rate_hz']} Hz"
        )

    def publish_reading(self) -> None:
        noise = self.rng.normal(0.0, self.params["noise_std"], self.pattern.forces.shape)
        reading = TactileReading(
            link_names=self.pattern.link_names,
            taxel_ids=self.pattern.taxel_ids,
            positions=self.pattern.positions,
            forces=self.pattern.forces + noise,
            force_scale=self.pattern.force_scale,
            stamp_ns=self.get_clock().now().nanoseconds,
        )
        self.publisher.publish(tactile_to_msg(reading, self.params["frame_id"]))


def main(args: list[str] | None = None) -> int:
    return run_node(TactileSimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
