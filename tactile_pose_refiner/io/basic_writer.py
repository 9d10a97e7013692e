"""Isaac Sim Replicator's BasicWriter output folder -> Frames (`tpr import-isaac`).

What BasicWriter writes for one render product, frame k zero-padded to 4 digits, all in SRC:

    rgb_k.png                                   RGBA, 8 bit
    distance_to_image_plane_k.npy               (H, W) float32, scene units; inf = nothing hit
    instance_segmentation_k.png                 (H, W) uint32 ids (colorize=False) or RGBA colours
    instance_segmentation_mapping_k.json        {id or colour: prim path}
    instance_segmentation_semantics_mapping_k.json   {id or colour: {"class": label}}
    camera_params_k.json                        cameraViewTransform, cameraFocalLength,
                                                cameraAperture, cameraApertureOffset,
                                                cameraProjection, renderProductResolution,
                                                metersPerSceneUnit, cameraModel, ...

plus what BasicWriter cannot know, one sidecar per frame written by the capture script
(README / docs/data.md show it):

    tpr_k.json   {"object_id": catalog id, "object_prim": prim path (or "object_label"),
                  "object_world_transform": 4x4, "hand_base_world_transform": 4x4,
                  "joint_names": [...], "joint_positions": [...],
                  "tactile_forces": (368, 3) in the skin layout's taxel order, "time_s"?}

USD conventions are converted here: matrices are row-vector (p' = p M) as
omni.usd.get_world_transform_matrix and cameraViewTransform give them, lengths are scene units
(x metersPerSceneUnit), and a USD camera looks down -Z with +Y up, while the optical frame looks
down +Z with +Y down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.scene.assets import skin_layout
from tactile_pose_refiner.core.scene.camera import PinholeCamera, depth_to_millimetres
from tactile_pose_refiner.core.scene.skin import TactileReading
from tactile_pose_refiner.io.isaac_import import IsaacImportError, load_file, read_json

USD_CAMERA_TO_OPTICAL = np.diag([1.0, -1.0, -1.0, 1.0])  # x right; y up -> down; looking -z -> +z


def is_basic_writer_folder(source: Path) -> bool:
    return any(Path(source).glob("camera_params_*.json"))


def basic_writer_frames(
    source: str | Path, prim: str | None = None, label: str | None = None, rate_hz: float = 30.0
) -> Iterator[Frame]:
    """Frames of a BasicWriter folder; the object's mask is the instance whose prim path is
    `prim` (or whose semantic class is `label`), by default the sidecar's object_prim /
    object_label."""
    source = Path(source)
    indices = sorted(p.stem.rsplit("_", 1)[1] for p in source.glob("camera_params_*.json"))
    skin = skin_layout()
    for step, k in enumerate(indices):
        sidecar = read_json(source / f"tpr_{k}.json")
        scale, camera, T_opt_world = camera_from_params(read_json(source / f"camera_params_{k}.json"), source, k)
        stamp_ns = int(round(float(sidecar.get("time_s", 1.7e9 + step / rate_hz)) * 1e9))
        rgb = load_file(source / f"rgb_{k}.png", lambda p: np.asarray(Image.open(p).convert("RGB")))
        depth = load_file(source / f"distance_to_image_plane_{k}.npy", np.load).astype(np.float64) * scale
        if rgb.shape[:2] != (camera.height, camera.width) or depth.shape != rgb.shape[:2]:
            raise IsaacImportError(f"frame {k}: image sizes differ from renderProductResolution in {source}")
        forces = np.asarray(_field(sidecar, "tactile_forces", source, k), dtype=float)
        if forces.shape != (len(skin), 3):
            raise IsaacImportError(f"{source}/tpr_{k}.json: tactile_forces {forces.shape}, expected ({len(skin)}, 3)")
        yield Frame(
            stamp_ns=stamp_ns,
            object_id=str(_field(sidecar, "object_id", source, k)),
            camera=camera,
            rgb=rgb,
            depth_mm=depth_to_millimetres(np.where(np.isfinite(depth) & (depth > 0), depth, 0.0)),
            mask=object_mask(source, k, *_chosen_instance(prim, label, sidecar)),
            joint_names=list(_field(sidecar, "joint_names", source, k)),
            joint_positions=np.asarray(_field(sidecar, "joint_positions", source, k), float),
            tactile=TactileReading(skin.links, skin.ids, skin.positions, forces, 0.0, stamp_ns),
            T_cam_base=T_opt_world @ _world_transform(sidecar, "hand_base_world_transform", scale, source, k),
            T_cam_obj=T_opt_world @ _world_transform(sidecar, "object_world_transform", scale, source, k),
        )


def camera_from_params(params: dict, source: Path, k: str) -> tuple[float, PinholeCamera, np.ndarray]:
    """(metres per scene unit, pinhole camera, T_optical_world [m]) of camera_params_k.json."""
    where = source / f"camera_params_{k}.json"
    try:
        width, height = (int(v) for v in params["renderProductResolution"])
        focal = float(params["cameraFocalLength"])
        aperture_x, aperture_y = (float(v) for v in params["cameraAperture"])
        offset = np.asarray(params.get("cameraApertureOffset", [0.0, 0.0]), float)
        scale = float(params.get("metersPerSceneUnit", 1.0))
        view = params["cameraViewTransform"]
    except (KeyError, TypeError, ValueError) as exc:
        raise IsaacImportError(f"{where}: missing or malformed {exc}") from exc
    if params.get("cameraModel", "pinhole") != "pinhole" or np.any(np.abs(offset) > 1e-9):
        raise IsaacImportError(f"{where}: only a pinhole camera without aperture offset is supported")
    fx, fy = focal / aperture_x * width, focal / aperture_y * height
    projection = params.get("cameraProjection")
    if projection is not None and not np.allclose(
        np.diag(np.reshape(projection, (4, 4)))[:2], [2 * fx / width, 2 * fy / height], rtol=1e-4
    ):
        raise IsaacImportError(f"{where}: cameraProjection disagrees with focal length and aperture")
    # the aperture's centre is the image centre: pixel centres sit at integers in ROS's K
    camera = PinholeCamera(width, height, fx, fy, width / 2 - 0.5, height / 2 - 0.5)
    return scale, camera, USD_CAMERA_TO_OPTICAL @ usd_transform(view, scale, f"{where}: cameraViewTransform")


def usd_transform(values, scale: float, what: str) -> np.ndarray:
    """A USD row-vector 4x4 (16 numbers or nested) in scene units -> column-vector, metres."""
    try:
        T = np.asarray(values, dtype=float).reshape(4, 4).T.copy()
    except (TypeError, ValueError) as exc:
        raise IsaacImportError(f"{what}: not a 4x4 matrix ({exc})") from exc
    if not np.isfinite(T).all() or abs(np.linalg.det(T[:3, :3]) - 1.0) > 1e-6:
        raise IsaacImportError(f"{what}: not a rigid transform (a scaled prim?)")
    T[:3, 3] *= scale
    return T


def _world_transform(sidecar: dict, key: str, scale: float, source: Path, k: str) -> np.ndarray:
    return usd_transform(_field(sidecar, key, source, k), scale, f"{source}/tpr_{k}.json: {key}")


def object_mask(source: Path, k: str, prim: str | None, label: str | None) -> np.ndarray:
    """uint8 0/255 mask of the object's instance in instance_segmentation_k.png."""
    if not prim and not label:
        raise IsaacImportError(f"{source}/tpr_{k}.json: names neither object_prim nor object_label")
    image = load_file(source / f"instance_segmentation_{k}.png", lambda p: np.asarray(Image.open(p)))
    if prim:
        mapping = read_json(source / f"instance_segmentation_mapping_{k}.json")
        keys = [key for key, path in mapping.items() if path == prim]
    else:
        semantics = read_json(source / f"instance_segmentation_semantics_mapping_{k}.json")
        keys = [key for key, value in semantics.items() if value.get("class") == label]
    if not keys:
        raise IsaacImportError(f"frame {k}: no instance of {prim or label} in the segmentation mappings of {source}")
    mask = np.zeros(image.shape[:2], dtype=bool)
    for key in keys:
        if key.startswith("("):  # colorize=True: the key is the instance's RGBA colour
            colour = np.array([int(v) for v in key.strip("()").split(",")], dtype=image.dtype)
            mask |= (image[..., : len(colour)] == colour[: image.shape[-1]]).all(axis=-1)
        else:
            mask |= image == int(key)
    return np.where(mask, 255, 0).astype(np.uint8)


def _chosen_instance(prim: str | None, label: str | None, sidecar: dict) -> tuple[str | None, str | None]:
    """(prim path, semantic label) naming the object's instance: the caller's, else the sidecar's."""
    if prim or label:
        return prim, label
    return sidecar.get("object_prim"), sidecar.get("object_label")


def _field(sidecar: dict, key: str, source: Path, k: str):
    if key not in sidecar:
        raise IsaacImportError(f"{source}/tpr_{k}.json: lacks {key}")
    return sidecar[key]
