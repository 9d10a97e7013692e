"""rgbd_node: time-synchronised colour + depth + camera_info (+ mask) -> RGB-D bundle and the
object's point cloud.

Subscribes (SensorDataQoS; names from config/topics.yaml, remappable): colour image (rgb8,
bgr8, rgba8, bgra8), aligned depth (16UC1 mm or 32FC1 m), camera_info, optional mono8 object
mask. Publishes `rgbd/bundle` (RgbdBundle: rgb8, 16UC1 mm, mask, camera_info, status) and
`rgbd/object_points` (PointCloud2, camera frame). Unusable input is reported on /diagnostics
and dropped; NaN or negative depths become invalid pixels (0), counted in the status. A
camera_info with a plumb_bob or rational_polynomial distortion is rectified here onto the same
K with no distortion (core/distortion.py; depth and mask nearest, colour bilinear), and the
bundle's camera_info says so (zero coefficients): every later node assumes a pinhole camera.
"""

from __future__ import annotations

import copy

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from tactile_pose_refiner.core.distortion import DistortionError, Rectifier
from tactile_pose_refiner.core.images import ImageInputError, image_from_message
from tactile_pose_refiner.msg import RgbdBundle
from tactile_pose_refiner.nodes.common import (
    OUTPUT_QOS,
    RELIABLE_INPUTS,
    SILENCE_WATCHDOG,
    GraphNode,
    ParameterError,
    default_topic,
    run_node,
    stale_by,
    synchronise,
)
from tactile_pose_refiner.nodes.conversions import camera_from_info, image_msg, point_cloud_msg

PARAMETERS = {
    **RELIABLE_INPUTS,
    **SILENCE_WATCHDOG,
    "use_mask": (True, "synchronise an object mask too (without one every valid pixel counts)"),
    "slop_s": (0.02, "largest stamp difference inside one synchronised set [s]"),
    "queue_size": (10, "messages waiting per stream for a partner"),
    "max_age_s": (0.0, "drop sets older than this against the node clock [s]; 0: off"),
    "min_object_points": (50, "fewer valid depth points in the mask -> status degraded"),
    "cloud_max_points": (20000, "object point cloud is subsampled to at most this many"),
}


class RgbdNode(GraphNode):
    def __init__(self) -> None:
        super().__init__("rgbd_node", PARAMETERS)
        self.bundle_pub = self.create_publisher(RgbdBundle, "rgbd/bundle", OUTPUT_QOS)
        self.cloud_pub = self.create_publisher(PointCloud2, "rgbd/object_points", OUTPUT_QOS)
        topics = [
            (Image, default_topic("color_image")),
            (Image, default_topic("depth_image")),
            (CameraInfo, default_topic("color_camera_info")),
        ]
        if self.params["use_mask"]:
            topics.append((Image, default_topic("object_mask")))
        if not (self.params["queue_size"] >= 1 and self.params["slop_s"] >= 0):
            raise ParameterError(
                f"queue_size must be 1 or more and slop_s 0 or more, got {self.params['queue_size']} and "
                f"{self.params['slop_s']}"
            )
        how = synchronise(
            self, topics, self.inputs, self.params["queue_size"], self.params["slop_s"], self.on_synchronised
        )
        self.rng = np.random.default_rng(0)
        self.rectifiers: dict[tuple, Rectifier | None] = {}  # per camera_info: built once
        self.get_logger().info(f"synchronising {[t for _, t in topics]} with {how}")

    def on_synchronised(self, color: Image, depth: Image, info: CameraInfo, mask: Image | None = None) -> None:
        stale = stale_by(self, color.header.stamp, self.params["max_age_s"])
        if stale is not None:
            self.diagnostics.report("warn", f"stale input: RGB-D set is {stale:.2f} s off the clock")
            return
        try:
            rgb = image_from_message(color, "color")
            depth_mm = image_from_message(depth, "depth")
            object_mask = image_from_message(mask, "mask") if mask is not None else None
            camera = camera_from_info(info)
        except (ImageInputError, ValueError) as exc:
            self.diagnostics.report("error", f"unusable input: {exc}")
            return
        shapes = {rgb.shape[:2], depth_mm.shape, (camera.height, camera.width)}
        if object_mask is not None:
            shapes.add(object_mask.shape)
        if len(shapes) != 1:
            self.diagnostics.report("error", f"unusable input: image sizes differ {sorted(shapes)}")
            return
        try:
            rectifier = self.rectifier(info)
        except DistortionError as exc:
            self.diagnostics.report("error", f"unusable input: {exc}")
            return
        received = {"rgb8": color, "16UC1": depth, "mono8": mask}
        if rectifier is not None:  # the graph works on a pinhole camera: the same K, no distortion
            rgb, depth_mm = rectifier.rectify(rgb, smooth=True), rectifier.rectify(depth_mm, smooth=False)
            object_mask = None if object_mask is None else rectifier.rectify(object_mask, smooth=False)
            info = copy.deepcopy(info)
            info.d = [0.0] * len(info.d)
            received = {}
        # an image already in the bundle's encoding goes in as it came (no re-encoding at 30 Hz)
        messages = {
            encoding: image_msg(array, encoding, color.header)
            if received.get(encoding) is None or received[encoding].encoding != encoding
            else received[encoding]
            for encoding, array in (("rgb8", rgb), ("16UC1", depth_mm), ("mono8", object_mask))
            if array is not None
        }
        self.publish(color.header, messages, depth_mm, object_mask, info, camera)

    def rectifier(self, info: CameraInfo) -> Rectifier | None:
        key = (tuple(info.k), info.distortion_model, tuple(info.d), info.width, info.height)
        if key not in self.rectifiers:
            K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
            self.rectifiers[key] = Rectifier.for_camera(K, info.distortion_model, info.d, info.width, info.height)
            if self.rectifiers[key] is not None:
                self.get_logger().info(f"rectifying {info.distortion_model} distortion {list(info.d)}")
        return self.rectifiers[key]

    def publish(self, header, messages: dict, depth_mm, object_mask, info, camera) -> None:
        """messages: the bundle's images by encoding; depth_mm, object_mask: the same as arrays."""
        inside = depth_mm > 0 if object_mask is None else (depth_mm > 0) & (object_mask > 0)
        count = int(inside.sum())
        status = "ok"
        if count < self.params["min_object_points"]:
            status = f"degraded: {count} valid depth points on the object"
        bundle = RgbdBundle(
            header=header,
            color=messages["rgb8"],
            depth=messages["16UC1"],
            camera_info=info,
            object_points=count,
            status=status,
        )
        if "mono8" in messages:
            bundle.mask = messages["mono8"]
        self.bundle_pub.publish(bundle)
        if self.cloud_pub.get_subscription_count() > 0:  # RViz's: back-projected only while watched
            points = camera.backproject(depth_mm / 1000.0, inside)
            if len(points) > self.params["cloud_max_points"]:
                points = points[self.rng.choice(len(points), self.params["cloud_max_points"], replace=False)]
            self.cloud_pub.publish(point_cloud_msg(points, header))
        invalid = float(np.mean(depth_mm == 0))
        self.diagnostics.report(
            "ok" if status == "ok" else "warn",
            status if status != "ok" else "publishing RGB-D bundles",
            object_points=count,
            invalid_depth_fraction=f"{invalid:.3f}",
        )


def main(args: list[str] | None = None) -> int:
    return run_node(RgbdNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
