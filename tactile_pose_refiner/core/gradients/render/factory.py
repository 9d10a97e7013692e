"""Backend choice from config/render.yaml, with prepared renderers cached per object and camera
(preparing a mesh — merging seams, finding edges, uploading the texture — costs ~0.1 s, and a
source is built every frame)."""
from __future__ import annotations

import torch

from tactile_pose_refiner.core.gradients.render.base import Renderer, RenderMesh
from tactile_pose_refiner.core.gradients.render.deodr_backend import DeodrRenderer
from tactile_pose_refiner.core.gradients.render.soft_torch import SoftTorchRenderer
from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.objects import ObjectModel

BACKENDS = ("deodr", "soft_torch")
_cache: dict[tuple, Renderer] = {}


def resolve_device(requested: str) -> str:
    """'cpu' | 'cuda' | 'auto' -> a torch device string; 'cuda' without CUDA is an error."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("config/render.yaml asks for device 'cuda' but torch sees no CUDA device")
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"render device must be cpu, cuda or auto, got '{requested}'")
    return requested


def renderer_for(model: ObjectModel, camera: PinholeCamera, config: dict,
                 backend: str | None = None) -> Renderer:
    """The configured backend (or `backend`) for this model and camera, cached."""
    backend = backend or config["backend"]
    if backend not in BACKENDS:
        raise ValueError(f"render backend must be one of {BACKENDS}, got '{backend}'")
    device = resolve_device(config.get("device", "cpu")) if backend == "soft_torch" else "cpu"
    sigma, min_area = float(config["sigma_px"]), float(config["min_screen_area_px2"])
    key = (model.object_id, str(model.mesh_path), camera, backend, device, sigma, min_area,
           float(config["min_face_area_m2"]), config.get("cuda_dtype"), config.get("deodr_texture_px"))
    if key not in _cache:
        mesh = RenderMesh.from_model(model, float(config["min_face_area_m2"]))
        if backend == "deodr":
            _cache[key] = DeodrRenderer(mesh, camera, sigma, min_area, int(config["deodr_texture_px"]))
        else:
            dtype = getattr(torch, config.get("cuda_dtype", "float32")) if device == "cuda" else torch.float64
            _cache[key] = SoftTorchRenderer(mesh, camera, sigma, min_area, device, dtype)
    return _cache[key]
