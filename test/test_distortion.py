"""Lens distortion removed at the door (core/distortion.py, rgbd_node): points imaged through a
plumb_bob or rational_polynomial lens land, after rectification, where a pinhole camera with the
same K puts them; depths are never blended; an undistorted camera passes untouched."""

from __future__ import annotations

import numpy as np
import pytest

from tactile_pose_refiner.core.distortion import DistortionError, Rectifier, distort

K = np.array([[600.0, 0.0, 322.0], [0.0, 602.0, 238.0], [0.0, 0.0, 1.0]])
W, H = 640, 480
LENSES = {
    "plumb_bob": [-0.28, 0.09, 0.001, -0.0015, -0.01],  # a wide-angle lens: strong barrel distortion
    "rational_polynomial": [0.4, -0.05, 0.0005, 0.001, 0.0, 0.75, 0.02, 0.0],
}


@pytest.mark.parametrize("model", sorted(LENSES))
def test_points_seen_through_a_lens_land_where_a_pinhole_camera_puts_them(model):
    rng = np.random.default_rng(0)
    pinhole = np.stack([rng.uniform(60, W - 60, 40), rng.uniform(60, H - 60, 40)], axis=1)  # (u, v)
    x, y = (pinhole[:, 0] - K[0, 2]) / K[0, 0], (pinhole[:, 1] - K[1, 2]) / K[1, 1]
    xd, yd = distort(x, y, np.array(LENSES[model]), model)
    seen = np.stack([xd * K[0, 0] + K[0, 2], yd * K[1, 1] + K[1, 2]], axis=1)
    assert np.abs(seen - pinhole).max() > 5  # the lens moves them by pixels
    # what the distorted camera records: a 3 x 3 blob at each distorted position, depths apart
    depth = np.zeros((H, W), np.uint16)
    for k, (u, v) in enumerate(np.rint(seen).astype(int)):
        depth[v - 1 : v + 2, u - 1 : u + 2] = 400 + 10 * k
    rectified = Rectifier.for_camera(K, model, LENSES[model], W, H).rectify(depth, smooth=False)
    assert set(np.unique(rectified)) <= set(np.unique(depth))  # nearest: no blended depths
    for k, (u, v) in enumerate(pinhole):
        rows, cols = np.nonzero(rectified == 400 + 10 * k)
        assert len(rows) > 0, k
        assert abs(cols.mean() - u) < 1.0 and abs(rows.mean() - v) < 1.0


def test_colour_is_resampled_and_a_pinhole_camera_is_left_alone():
    rectifier = Rectifier.for_camera(K, "plumb_bob", LENSES["plumb_bob"], W, H)
    flat = np.full((H, W, 3), 200, np.uint8)
    out = rectifier.rectify(flat, smooth=True)
    assert out.dtype == np.uint8 and out.shape == flat.shape and out[H // 2, W // 2].tolist() == [200, 200, 200]
    assert Rectifier.for_camera(K, "plumb_bob", [0.0] * 5, W, H) is None
    assert Rectifier.for_camera(K, "", [], W, H) is None
    with pytest.raises(DistortionError, match="equidistant"):
        Rectifier.for_camera(K, "equidistant", [0.1, 0.0, 0.0, 0.0], W, H)


def test_rgbd_node_rectifies_a_distorted_camera_before_the_bundle(ros_env):
    import rclpy
    from sensor_msgs.msg import CameraInfo

    from tactile_pose_refiner.nodes.conversions import image_msg
    from tactile_pose_refiner.nodes.rgbd_node import RgbdNode

    rclpy.init(domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        node = RgbdNode()
        sent = []
        node.publish = lambda header, rgb, depth_mm, mask, info, camera: sent.append((depth_mm, info))
        info = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
        info.k, info.d = K.ravel().tolist(), list(LENSES["plumb_bob"])
        info.header.frame_id = "camera_color_optical_frame"
        depth = np.zeros((H, W), np.uint16)
        depth[:, :100] = 500  # a depth edge near the left border, bent by the lens
        colour, depth_image = (
            image_msg(np.zeros((H, W, 3), np.uint8), "rgb8", info.header),
            image_msg(depth, "16UC1", info.header),
        )
        node.on_synchronised(colour, depth_image, info)
        node.destroy_node()
    finally:
        rclpy.shutdown()
    ((rectified, published_info),) = sent
    assert list(published_info.d) == [0.0] * 5 and list(info.d) == LENSES["plumb_bob"]  # the input is not changed
    assert set(np.unique(rectified)) <= {0, 500} and not np.array_equal(rectified, depth)
