"""Episodes as rosbag2 files (MCAP), written and read with the pure-Python `rosbags` library
(its CDR and type hashes match rclpy's, so a replay node can publish the raw bytes)."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.geometry import matrix_to_pose, pose_fields_to_matrix
from tactile_pose_refiner.core.images import image_from_message
from tactile_pose_refiner.core.resources import load_config, share_dir
from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.skin import TactileReading

TYPES = {
    "color_image": "sensor_msgs/msg/Image",
    "color_camera_info": "sensor_msgs/msg/CameraInfo",
    "depth_image": "sensor_msgs/msg/Image",
    "depth_camera_info": "sensor_msgs/msg/CameraInfo",
    "object_mask": "sensor_msgs/msg/Image",
    "joint_states": "sensor_msgs/msg/JointState",
    "tactile": "tactile_pose_refiner/msg/TactileArray",
    "hand_pose": "geometry_msgs/msg/PoseStamped",
    "ground_truth_pose": "geometry_msgs/msg/PoseStamped",
    "object_id": "std_msgs/msg/String",
    "ground_truth_joint_states": "sensor_msgs/msg/JointState",
    "ground_truth_hand_pose": "geometry_msgs/msg/PoseStamped",
    "realism": "std_msgs/msg/String",
    "dynamics": "std_msgs/msg/String",
}
OPTIONAL = ("ground_truth_joint_states", "ground_truth_hand_pose", "realism", "dynamics")  # only where recorded
REQUIRED = ("color_image", "color_camera_info", "depth_image", "joint_states", "tactile", "hand_pose", "object_id")


class EpisodeError(RuntimeError):
    """An episode bag is missing, corrupt or incomplete; the message names the file."""


def typestore():
    """ROS 2 kilted types plus this package's messages (registered from msg/*.msg)."""
    store = get_typestore(Stores.ROS2_KILTED)
    for path in sorted((share_dir() / "msg").glob("*.msg")):
        store.register(get_types_from_msg(path.read_text(), f"tactile_pose_refiner/msg/{path.stem}"))
    return store


class EpisodeWriter:
    """Writes Frames to a rosbag2 directory (one episode per bag). The bag is written in a
    hidden folder beside `path` and moved there once closed without an error: an interrupted
    or failed write leaves nothing that looks like an episode."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists")
        self.topics = load_config("topics")
        self.store = typestore()
        self.types = self.store.types
        self.staging = self.path.parent / f".{self.path.name}.partial"
        shutil.rmtree(self.staging, ignore_errors=True)  # an earlier write that was killed
        self.staging.mkdir(parents=True)
        self.writer = Writer(self.staging / self.path.name, version=9, storage_plugin=StoragePlugin.MCAP)
        self.connections = {}

    def __enter__(self) -> EpisodeWriter:
        self.writer.open()
        for key in TYPES:
            if key not in OPTIONAL:
                self._connect(key)
        return self

    def _connect(self, key: str):
        self.connections[key] = self.writer.add_connection(self.topics[key], TYPES[key], typestore=self.store)
        return self.connections[key]

    def __exit__(self, exc_type, *exc_info) -> None:
        try:
            self.writer.close()
            if exc_type is None:
                (self.staging / self.path.name).rename(self.path)
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def write(self, frame: Frame) -> None:
        header = self._header(frame.stamp_ns, frame.camera.frame_id)
        T = self.types
        messages = {
            "color_image": self._image(header, frame.rgb, "rgb8"),
            "color_camera_info": self._camera_info(header, frame.camera),
            "depth_image": self._image(header, frame.depth_mm, "16UC1"),
            "depth_camera_info": self._camera_info(header, frame.camera),
            "joint_states": self._joint_state(frame.stamp_ns, frame.joint_names, frame.joint_positions),
            "tactile": self._tactile(frame.tactile),
            "hand_pose": self._pose(header, frame.T_cam_base),
            "object_id": T["std_msgs/msg/String"](data=frame.object_id),
        }
        if frame.mask is not None:
            messages["object_mask"] = self._image(header, frame.mask, "mono8")
        if frame.T_cam_obj is not None:
            messages["ground_truth_pose"] = self._pose(header, frame.T_cam_obj)
        if frame.joint_positions_true is not None:
            messages["ground_truth_joint_states"] = self._joint_state(
                frame.stamp_ns, frame.joint_names, frame.joint_positions_true
            )
        if frame.T_cam_base_true is not None:
            messages["ground_truth_hand_pose"] = self._pose(header, frame.T_cam_base_true)
        if frame.realism is not None:
            messages["realism"] = T["std_msgs/msg/String"](data=json.dumps(frame.realism))
        if frame.dynamics is not None:
            messages["dynamics"] = T["std_msgs/msg/String"](data=json.dumps(frame.dynamics))
        for key, message in messages.items():
            connection = self.connections.get(key) or self._connect(key)
            self.writer.write(connection, frame.stamp_ns, self.store.serialize_cdr(message, TYPES[key]))

    # -- message builders --------------------------------------------------------------------
    def _joint_state(self, stamp_ns: int, names, positions):
        return self.types["sensor_msgs/msg/JointState"](
            header=self._header(stamp_ns, ""),
            name=list(names),
            position=np.asarray(positions, dtype=np.float64),
            velocity=np.zeros(0),
            effort=np.zeros(0),
        )

    def _header(self, stamp_ns: int, frame_id: str):
        T = self.types
        stamp = T["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        return T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def _image(self, header, array: np.ndarray, encoding: str):
        array = np.ascontiguousarray(array)
        height, width = array.shape[:2]
        return self.types["sensor_msgs/msg/Image"](
            header=header,
            height=height,
            width=width,
            encoding=encoding,
            is_bigendian=0,
            step=array.strides[0],
            data=array.view(np.uint8).reshape(-1),
        )

    def _camera_info(self, header, camera: PinholeCamera):
        K = camera.K
        P = np.zeros((3, 4))
        P[:, :3] = K
        T = self.types
        return T["sensor_msgs/msg/CameraInfo"](
            header=header,
            height=camera.height,
            width=camera.width,
            distortion_model="plumb_bob",
            d=np.zeros(5),
            k=K.ravel(),
            r=np.eye(3).ravel(),
            p=P.ravel(),
            binning_x=0,
            binning_y=0,
            roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        )

    def _pose(self, header, matrix: np.ndarray):
        T = self.types
        position, quaternion = matrix_to_pose(matrix)
        return T["geometry_msgs/msg/PoseStamped"](
            header=header,
            pose=T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=position[0], y=position[1], z=position[2]),
                orientation=T["geometry_msgs/msg/Quaternion"](
                    x=quaternion[0], y=quaternion[1], z=quaternion[2], w=quaternion[3]
                ),
            ),
        )

    def _tactile(self, reading: TactileReading):
        T = self.types
        return T["tactile_pose_refiner/msg/TactileArray"](
            header=self._header(reading.stamp_ns, ""),
            link_names=list(reading.link_names),
            taxel_ids=reading.taxel_ids.astype(np.uint16),
            positions=[T["geometry_msgs/msg/Point"](x=p[0], y=p[1], z=p[2]) for p in reading.positions],
            forces=[T["geometry_msgs/msg/Vector3"](x=f[0], y=f[1], z=f[2]) for f in reading.forces],
            force_scale=float(reading.force_scale),
        )


def write_episode(path: str | Path, frames: Iterable[Frame]) -> int:
    count = 0
    with EpisodeWriter(path) as writer:
        for frame in frames:
            writer.write(frame)
            count += 1
    return count


def unreadable_episodes(paths: list[Path]) -> list[str]:
    """Why each of `paths` that cannot be opened cannot (a recording cut short has no MCAP
    footer): checked before a long run, which would otherwise stop at that episode."""
    problems = []
    for path in paths:
        try:
            with Reader(path):
                pass
        except Exception as exc:  # noqa: BLE001 - rosbags raises several kinds; each is a reason to name
            problems.append(f"{path}: {exc}")
    return problems


def read_episode(path: str | Path) -> Iterator[Frame]:
    """Frames of a rosbag2 episode, grouped by header stamp (all topics of one frame share it)."""
    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise EpisodeError(f"not a rosbag2 episode (no metadata.yaml): {path}")
    topics = load_config("topics")
    key_of = {topics[key]: key for key in TYPES}
    store = typestore()
    by_stamp: dict[int, dict] = defaultdict(dict)
    try:
        with Reader(path) as reader:
            present = {c.topic for c in reader.connections}
            missing = [topics[k] for k in REQUIRED if topics[k] not in present]
            if missing:
                raise EpisodeError(f"episode {path} lacks topics {missing}")
            wanted = [c for c in reader.connections if c.topic in key_of]
            for connection, timestamp, raw in reader.messages(connections=wanted):
                by_stamp[timestamp][key_of[connection.topic]] = store.deserialize_cdr(raw, connection.msgtype)
    except EpisodeError:
        raise
    except Exception as exc:
        raise EpisodeError(f"cannot read episode {path}: {exc}") from exc
    for stamp in sorted(by_stamp):
        messages = by_stamp[stamp]
        if all(key in messages for key in REQUIRED):
            yield _frame(stamp, messages)


def _frame(stamp_ns: int, m: dict) -> Frame:
    info = m["color_camera_info"]
    camera = PinholeCamera.from_matrix(np.asarray(info.k).reshape(3, 3), info.width, info.height, info.header.frame_id)
    return Frame(
        stamp_ns=stamp_ns,
        object_id=m["object_id"].data,
        camera=camera,
        rgb=image_from_message(m["color_image"], "color"),
        depth_mm=image_from_message(m["depth_image"], "depth"),
        mask=image_from_message(m["object_mask"], "mask") if "object_mask" in m else None,
        joint_names=list(m["joint_states"].name),
        joint_positions=np.asarray(m["joint_states"].position),
        tactile=TactileReading.from_message(m["tactile"]),
        T_cam_base=pose_fields_to_matrix(m["hand_pose"].pose),
        T_cam_obj=pose_fields_to_matrix(m["ground_truth_pose"].pose) if "ground_truth_pose" in m else None,
        joint_positions_true=(
            _true_joints(m["joint_states"], m["ground_truth_joint_states"])
            if "ground_truth_joint_states" in m
            else None
        ),
        T_cam_base_true=(
            pose_fields_to_matrix(m["ground_truth_hand_pose"].pose) if "ground_truth_hand_pose" in m else None
        ),
        realism=json.loads(m["realism"].data) if "realism" in m else None,
        dynamics=json.loads(m["dynamics"].data) if "dynamics" in m else None,
    )


def _true_joints(observed, truth) -> np.ndarray:
    """The true joint positions in the observed message's joint order."""
    by_name = dict(zip(truth.name, truth.position))
    return np.array([by_name.get(name, np.nan) for name in observed.name], dtype=np.float64)


def object_frames(episodes: list[Path], object_id: str) -> Iterator[tuple[int, Frame]]:
    """(episode index, frame) of one object's frames in recorded episodes."""
    for index, episode in enumerate(episodes):
        for frame in read_episode(episode):
            if frame.object_id == object_id:
                yield index, frame
