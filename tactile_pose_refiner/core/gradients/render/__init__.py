"""Rendering gradient L_DR: a renderer interface (base), two backends (DEODR on the CPU, a
pure-torch soft-silhouette rasteriser on CPU or CUDA) and the gradient source (source)."""

from tactile_pose_refiner.core.gradients.render.base import Renderer, Rendering, RenderMesh, Roi, roi_around
from tactile_pose_refiner.core.gradients.render.factory import renderer_for
from tactile_pose_refiner.core.gradients.render.source import RenderSource

__all__ = ["Renderer", "Rendering", "RenderMesh", "Roi", "roi_around", "renderer_for", "RenderSource"]
