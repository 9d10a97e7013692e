"""CPU backend: DEODR's C++ rasteriser (textures, anti-aliased silhouette edges, exact
derivatives of the image w.r.t. the projected vertices), bridged to torch autograd.

DEODR's own PyTorch scene fixes the edge width at 1 px and lights the mesh; this bridge calls
its 2D scene directly, so the mesh renders unlit (texture as seen, like the camera sees a
diffusely lit scan), back faces and slivers are culled by us before DEODR sees them (its
own culling then keeps every face we pass: front faces are counter-clockwise in the image, so
clockwise=False), and sigma comes from the config.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from deodr.differentiable_renderer import Scene2D, renderScene, renderSceneB
from PIL import Image

from tactile_pose_refiner.core.gradients.render.base import (
    Renderer,
    Rendering,
    RenderMesh,
    Roi,
    front_facing,
    project_vertices,
    silhouette_edges,
)
from tactile_pose_refiner.core.scene.camera import PinholeCamera


class _Rasterise(torch.autograd.Function):
    """(V, 2) ROI pixel coordinates, (V, C) vertex colours -> (h, w, C) image, through a
    prepared DEODR Scene2D (float64, CPU)."""

    @staticmethod
    def forward(ctx: Any, ij: torch.Tensor, colors: torch.Tensor, scene: Scene2D, sigma: float) -> torch.Tensor:
        scene.ij = ij.detach().numpy().astype(np.float64)
        scene.colors = np.ascontiguousarray(colors.detach().numpy(), dtype=np.float64)
        image = np.empty((scene.height, scene.width, scene.nb_colors))
        z_buffer = np.empty((scene.height, scene.width))
        renderScene(scene, sigma, image, z_buffer, check_valid=True)
        ctx.scene, ctx.sigma, ctx.image, ctx.z_buffer = scene, sigma, image, z_buffer
        return torch.from_numpy(image.copy())

    @staticmethod
    def backward(ctx: Any, image_b: torch.Tensor):
        scene = ctx.scene
        scene.clear_gradients()
        renderSceneB(
            scene,
            ctx.sigma,
            ctx.image.copy(),
            ctx.z_buffer,
            np.ascontiguousarray(image_b.numpy(), dtype=np.float64),
            check_valid=True,
        )
        return torch.from_numpy(scene.ij_b.copy()), torch.from_numpy(scene.colors_b.copy()), None, None


class DeodrRenderer(Renderer):
    """Textured meshes: one pass of [r, g, b, 1] from an RGBA texture plus one pass of [z];
    vertex-coloured meshes: one pass of [r, g, b, 1, z]. float64 on the CPU."""

    name = "deodr"
    edge_coverage = 1.0

    def __init__(
        self, mesh: RenderMesh, camera: PinholeCamera, sigma_px: float, min_screen_area_px2: float, texture_size_px: int
    ) -> None:
        super().__init__(mesh, camera)
        self.sigma = float(sigma_px)
        self.min_screen_area = float(min_screen_area_px2)
        self.vertices = torch.from_numpy(mesh.vertices)
        self.faces = torch.from_numpy(mesh.faces)
        self.face_edges = torch.from_numpy(mesh.face_edges)
        if mesh.texture is not None:
            texture = _resized(mesh.texture, texture_size_px)
            height, width = texture.shape[:2]
            # DEODR texture coordinates are texel units, row 0 at the top, texel centres at +0.5.
            self.uv_texels = np.column_stack([mesh.uv[:, 0] * width, (1.0 - mesh.uv[:, 1]) * height]) - 0.5
            alpha = np.ones((height, width, 1))
            self.texture_rgba = np.ascontiguousarray(np.concatenate([texture, alpha], axis=2))

    def coverage(self, signed_distance_px):
        """DEODR's edge overdraw: 1 inside, a ramp from 1 at the edge to 0 at sigma outside."""
        return (1.0 - signed_distance_px.clip(min=0.0) / self.sigma).clip(0.0, 1.0)

    def render(self, rotation: torch.Tensor, translation: torch.Tensor, roi: Roi, with_depth: bool = True) -> Rendering:
        ij, points = project_vertices(self.vertices.to(rotation.dtype), rotation, translation, self.camera, roi)
        ij, z = ij.double(), points[:, 2].double()
        drawn, edge_flags = self._visible_faces(ij.detach(), points.detach())
        if self.mesh.texture is None:
            colors = torch.cat([torch.from_numpy(self.mesh.colors), torch.ones_like(z)[:, None], z[:, None]], dim=1)
            image = self._pass(ij, colors, z, drawn, edge_flags, roi, textured=False)
            rgba, depth = image[..., :4], image[..., 4]
        else:
            rgba = self._pass(ij, torch.zeros(len(z), 4, dtype=z.dtype), z, drawn, edge_flags, roi, textured=True)
            depth = (
                self._pass(ij, z[:, None], z, drawn, edge_flags, roi, textured=False)[..., 0]
                if with_depth
                else torch.zeros_like(rgba[..., 3])
            )
        return Rendering(rgba[..., :3], rgba[..., 3], depth, roi)

    def _visible_faces(self, ij: torch.Tensor, points: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Indices of front-facing, non-degenerate faces and their (n, 3) silhouette-edge flags.
        Culling slivers keeps DEODR's per-triangle inverse areas finite."""
        front = front_facing(points[self.faces])
        corners = ij[self.faces]
        a, b = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
        area = 0.5 * torch.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])  # (torch.linalg.det: 5x as long)
        drawn = front & (area > self.min_screen_area)
        flags = silhouette_edges(self.face_edges, self.mesh.edge_count, drawn)
        return drawn.numpy(), flags[drawn].numpy()

    def _pass(self, ij, colors, z, drawn, edge_flags, roi, textured: bool) -> torch.Tensor:
        faces = self.mesh.faces[drawn].astype(np.uint32)
        count = len(faces)
        scene = Scene2D(
            faces=faces,
            faces_uv=self.mesh.faces_uv[drawn].astype(np.uint32) if textured else faces,
            ij=np.zeros((len(z), 2)),
            depths=z.detach().numpy(),
            textured=np.full(count, textured),
            uv=self.uv_texels if textured else np.zeros((len(z), 2)),
            # DEODR draws a face's texture only when it is also shaded: shade 1 = unlit.
            shade=np.ones(len(z)),
            colors=np.zeros((len(z), colors.shape[1])),
            shaded=np.full(count, textured),
            edgeflags=edge_flags,
            height=roi.height,
            width=roi.width,
            nb_colors=colors.shape[1],
            texture=self.texture_rgba if textured else np.zeros((0, 0, colors.shape[1])),
            background_color=np.zeros(colors.shape[1]),
            clockwise=False,
            backface_culling=True,
        )
        return _Rasterise.apply(ij, colors, scene, self.sigma)


def _resized(texture: np.ndarray, size_px: int) -> np.ndarray:
    """(H, W, 3) float texture -> at most size_px on its longer side (area-averaged). DEODR
    copies the texture twice per call (forward, backward): a 1024^2 RGBA float64 map costs more
    than the rasterisation of a window, and a 200 px object never shows more texels than that."""
    height, width = texture.shape[:2]
    if max(height, width) <= size_px:
        return texture
    scale = size_px / max(height, width)
    image = Image.fromarray(np.round(texture * 255).astype(np.uint8))
    image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BOX)
    return np.asarray(image, dtype=np.float64) / 255.0
