"""Conversions between ROS messages and core types (no computation here)."""

from __future__ import annotations

import array
import importlib
import struct
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseWithCovarianceStamped, Quaternion, Vector3
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from tactile_pose_refiner.core.geometry import matrices_to_poses
from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.skin import TactileReading
from tactile_pose_refiner.msg import TactileArray


def ns_to_stamp(stamp_ns: int) -> Time:
    return Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def stamp_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def cdr_header_stamp_ns(data: bytes) -> int | None:
    """header.stamp of a serialised message whose first field is a std_msgs/Header, read from
    its bytes (plain CDR: a 4-byte encapsulation, then int32 sec and uint32 nanosec); None for
    another encoding."""
    if len(data) < 12 or data[0] != 0 or data[1] not in (0, 1):
        return None
    sec, nanosec = struct.unpack_from("<iI" if data[1] == 1 else ">iI", data, 4)
    return sec * 1_000_000_000 + nanosec


class LazyMessage:
    """A message as it came off the wire, turned into a Python message only when used: at 30 Hz
    a 1.8 MB RGB-D bundle costs ~2 ms of the executor's time to deserialise, and a tracking or
    resting node uses few of them."""

    __slots__ = ("data", "msg_type", "stamp_ns", "_message")

    def __init__(self, data: bytes, msg_type) -> None:
        self.data, self.msg_type, self._message = data, msg_type, None
        stamp = cdr_header_stamp_ns(data)
        self.stamp_ns = stamp_ns(self.message().header.stamp) if stamp is None else stamp

    def message(self):
        if self._message is None:
            self._message = deserialize_message(self.data, self.msg_type)
        return self._message


def matrix_to_pose_msg(matrix: np.ndarray) -> Pose:
    return matrices_to_pose_msgs(np.asarray(matrix)[None])[0]


def matrices_to_pose_msgs(matrices: np.ndarray) -> list[Pose]:
    """(N, 4, 4) -> N Poses, converted together."""
    translations, quaternions = matrices_to_poses(matrices)
    return [
        Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))
        for (x, y, z), (qx, qy, qz, qw) in zip(translations.tolist(), quaternions.tolist())
    ]


def pose_with_covariance_msg(header, pose: Pose, covariance: np.ndarray) -> PoseWithCovarianceStamped:
    """A pose and its (6, 6) covariance (ROS convention: x, y, z, rot x, rot y, rot z)."""
    message = PoseWithCovarianceStamped(header=header)
    message.pose.pose = pose
    message.pose.covariance = [float(v) for v in np.asarray(covariance).ravel()]
    return message


def camera_from_info(info: CameraInfo) -> PinholeCamera:
    """Raises ValueError when the intrinsics cannot be a real camera's (PinholeCamera.implausible)."""
    K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    camera = PinholeCamera.from_matrix(K, int(info.width), int(info.height), info.header.frame_id)
    problem = camera.implausible()
    if problem is not None:
        raise ValueError(f"camera_info is implausible: {problem}")
    return camera


def image_msg(array: np.ndarray, encoding: str, header) -> Image:
    array = np.ascontiguousarray(array)
    return Image(
        header=header,
        height=array.shape[0],
        width=array.shape[1],
        encoding=encoding,
        is_bigendian=0,
        step=array.strides[0],
        data=_bytes(array),
    )


def point_cloud_msg(points: np.ndarray, header) -> PointCloud2:
    """(N, 3) points [m] -> PointCloud2 with float32 x, y, z."""
    xyz = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 3)
    fields = [PointField(name=name, offset=4 * k, datatype=PointField.FLOAT32, count=1) for k, name in enumerate("xyz")]
    return PointCloud2(
        header=header,
        height=1,
        width=len(xyz),
        fields=fields,
        is_bigendian=False,
        point_step=12,
        row_step=12 * len(xyz),
        data=_bytes(xyz),
        is_dense=True,
    )


def _bytes(values: np.ndarray) -> array.array:
    """uint8[] field value: an array('B') is taken as is (bytes are checked element-wise)."""
    return array.array("B", values.tobytes())


def tactile_to_msg(reading: TactileReading, frame_id: str = "") -> TactileArray:
    msg = TactileArray()
    msg.header.stamp = ns_to_stamp(reading.stamp_ns)
    msg.header.frame_id = frame_id
    msg.link_names = list(reading.link_names)
    msg.taxel_ids = reading.taxel_ids.astype(np.uint16).tolist()
    msg.positions = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in reading.positions]
    msg.forces = [Vector3(x=float(x), y=float(y), z=float(z)) for x, y, z in reading.forces]
    msg.force_scale = float(reading.force_scale)
    return msg


def tactile_from_msg(msg: TactileArray) -> TactileReading:
    """Raises core TactileInputError when the message is inconsistent."""
    return TactileReading.from_message(msg)


def message_class(type_name: str) -> type:
    """`pkg/msg/Name` (or `pkg/Name`, `pkg.msg.Name`) -> the generated Python class."""
    parts = type_name.replace(".", "/").split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3:
        raise ValueError(f"message type '{type_name}' is not of the form package/msg/Name")
    package, kind, name = parts
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"unknown message type '{type_name}': {exc}") from exc


def message_to_dict(msg: Any) -> Any:
    """Recursively turn a ROS message into JSON-serialisable dicts/lists/numbers."""
    if hasattr(msg, "get_fields_and_field_types"):
        return {field: message_to_dict(getattr(msg, field)) for field in msg.get_fields_and_field_types()}
    if isinstance(msg, (list, tuple, array.array)):
        return [message_to_dict(item) for item in msg]
    if isinstance(msg, np.ndarray):
        return msg.tolist()
    if isinstance(msg, np.generic):
        return msg.item()
    if isinstance(msg, bytes):
        return list(msg)
    return msg
