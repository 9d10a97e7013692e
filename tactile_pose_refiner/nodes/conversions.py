"""Conversions between ROS messages and core types (no computation here)."""
from __future__ import annotations

import array
import importlib
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Vector3

from tactile_pose_refiner.core.scene.skin import TactileReading
from tactile_pose_refiner.msg import TactileArray


def ns_to_stamp(stamp_ns: int) -> Time:
    return Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


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
        return {field: message_to_dict(getattr(msg, field))
                for field in msg.get_fields_and_field_types()}
    if isinstance(msg, (list, tuple, array.array)):
        return [message_to_dict(item) for item in msg]
    if isinstance(msg, np.ndarray):
        return msg.tolist()
    if isinstance(msg, np.generic):
        return msg.item()
    if isinstance(msg, bytes):
        return list(msg)
    return msg
