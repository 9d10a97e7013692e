"""Backend choice from config/render.yaml, with prepared renderers cached per object and camera
(preparing a mesh — merging seams, finding edges, uploading the texture — costs ~0.1 s, and a
source is built every frame)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from tactile_pose_refiner.core.device import resolve_device
from tactile_pose_refiner.core.gradients.render.base import Renderer, RenderMesh
from tactile_pose_refiner.core.gradients.render.deodr_backend import DeodrRenderer
from tactile_pose_refiner.core.gradients.render.soft_torch import SoftTorchRenderer
from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.objects import ObjectModel

_cache: dict[tuple, Renderer] = {}


def _deodr(mesh: RenderMesh, camera: PinholeCamera, config: dict, device: str) -> Renderer:
    return DeodrRenderer(
        mesh, camera, float(config["sigma_px"]), float(config["min_screen_area_px2"]), int(config["deodr_texture_px"])
    )


def _soft_torch(mesh: RenderMesh, camera: PinholeCamera, config: dict, device: str) -> Renderer:
    dtype = getattr(torch, config.get("cuda_dtype", "float32")) if device == "cuda" else torch.float64
    return SoftTorchRenderer(
        mesh, camera, float(config["sigma_px"]), float(config["min_screen_area_px2"]), device, dtype
    )


# name -> builder(mesh, camera, config/render.yaml, device): a new backend adds one entry here.
RENDERERS: dict[str, Callable[[RenderMesh, PinholeCamera, dict, str], Renderer]] = {
    "deodr": _deodr,
    "soft_torch": _soft_torch,
}
BACKENDS = tuple(RENDERERS)
TORCH_DEVICE_BACKENDS = ("soft_torch",)  # the others run on the CPU whatever the device


def renderer_for(model: ObjectModel, camera: PinholeCamera, config: dict, backend: str | None = None) -> Renderer:
    """The configured backend (or `backend`) for this model and camera, cached."""
    backend = backend or config["backend"]
    if backend not in RENDERERS:
        raise ValueError(f"render backend must be one of {BACKENDS}, got '{backend}'")
    device = resolve_device(config.get("device", "cpu")) if backend in TORCH_DEVICE_BACKENDS else "cpu"
    key = (
        model.object_id,
        str(model.mesh_path),
        camera,
        backend,
        device,
        float(config["sigma_px"]),
        float(config["min_screen_area_px2"]),
        float(config["min_face_area_m2"]),
        config.get("cuda_dtype"),
        config.get("deodr_texture_px"),
    )
    if key not in _cache:
        mesh = RenderMesh.from_model(model, float(config["min_face_area_m2"]))
        _cache[key] = RENDERERS[backend](mesh, camera, config, device)
    return _cache[key]
