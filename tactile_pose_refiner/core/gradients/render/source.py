"""L_DR, the render-and-compare gradient source (paper §III-B; HandyPriors Eq. 1, 2, 6).

    L_DR = w_rgb   * mean_pixels |I_r - M I_in|^2 / 3          (I_r premultiplied by alpha_r)
         + w_mask  * mean_pixels (alpha_r - M)^2
         + w_depth * mean_pixels [M_valid] (alpha_r z_r - alpha_r z_in)^2 / unit^2

over the entire image, as in the paper, less the pixels the hand hides (below). Only a window
around the object's projection at the current pose is rendered; outside it the render is
empty, so those pixels add a constant that depends on the frame only (sum of the target's
squares there), computed from per-frame totals: the loss is exactly the full-image loss, at a
cost that follows the object's size.

The observed mask M is softened by the backend's own edge model (`Renderer.coverage`), and the
observed colour is carried into that soft rim from the nearest object pixel, so the loss is
zero at the true pose for any backend (DEODR's one-sided overdraw would otherwise shrink the
object, i.e. push it away from the camera). Without a mask the render is composited over the
observed image and compared with it (RGB term only).

The hand is fixed within a frame and its pose is known (joint states), so its silhouette is
ray-cast once per frame. Where it covers a pixel and the object is not seen there, the image says
nothing about the object (the fingers may be in front of it), so that pixel leaves every term;
the hand-object border is not a silhouette edge of the object either. Without this the loss pulls
the rendered object out from under the fingers (measured: refined poses sit deeper in the hand
than the truth). Where the object is seen in front of the hand, the pixel stays; so does one
where the depth image shows the hand behind the object (a palm behind it): the object would be
seen there if it reached that pixel, and the border with it is an edge.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from scipy.integrate import trapezoid
from scipy.ndimage import binary_dilation, distance_transform_edt, gaussian_filter
from scipy.optimize import brentq
from scipy.special import ndtri

from tactile_pose_refiner.core.gradients.base import GradientSource, SourceLoss, degraded, pose_array
from tactile_pose_refiner.core.gradients.render.base import Renderer, RenderInputError, mesh_silhouette, roi_around
from tactile_pose_refiner.core.gradients.render.factory import renderer_for
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.objects import ObjectModel


class RenderSource(GradientSource):
    """Built per frame from (model, camera, rgb (H, W, 3) uint8, mask (H, W) bool/uint8 or None,
    depth_m (H, W) [m] 0 = invalid, or None, occluders: the hand mesh in the camera frame or
    None, reference_pose: a pose near the object's (the initial one) where the backend's edge
    is measured, or None, uncertain: (H, W) bool pixels the mask cannot settle (core/mask_check.py),
    which leave the loss, or None); loss(R, t) -> SourceLoss, cheap under no_grad."""

    name = "render"

    def __init__(
        self,
        model: ObjectModel,
        camera: PinholeCamera,
        rgb: np.ndarray,
        mask: np.ndarray | None = None,
        depth_m: np.ndarray | None = None,
        config: dict | None = None,
        renderer: Renderer | None = None,
        occluders: trimesh.Trimesh | None = None,
        reference_pose: np.ndarray | None = None,
        uncertain: np.ndarray | None = None,
    ) -> None:
        self.config = config if config is not None else load_config("render")
        self.reference_pose = reference_pose
        self.camera = camera
        self.problem: str | None = None
        self.weights = {k: float(v) for k, v in self.config["weights"].items()}
        try:
            self.renderer = renderer or renderer_for(model, camera, self.config)
            self._set_targets(rgb, mask, depth_m, occluders, uncertain)
        except RenderInputError as exc:
            self.problem = str(exc)

    # -- per frame ------------------------------------------------------------------------------

    def _set_targets(self, rgb, mask, depth_m, occluders, uncertain=None) -> None:
        shape = (self.camera.height, self.camera.width)
        if rgb is None or np.shape(rgb) != (*shape, 3):
            raise RenderInputError(f"rgb image of shape {np.shape(rgb)}, expected {(*shape, 3)}")
        image = np.asarray(rgb, dtype=np.float64) / 255.0
        if not np.isfinite(image).all():
            raise RenderInputError("non-finite rgb values")
        self.observed_rgb = image
        self.target_rgb = self.target_alpha = self.depth_valid = None
        if mask is not None:
            if np.shape(mask) != shape:
                raise RenderInputError(f"mask of shape {np.shape(mask)}, expected {shape}")
            mask = np.asarray(mask) > 0
            if mask.sum() < int(self.config["min_mask_pixels"]):
                raise RenderInputError(f"object mask has {int(mask.sum())} pixels")
        depth = None
        if depth_m is not None:
            if np.shape(depth_m) != shape:
                raise RenderInputError(f"depth of shape {np.shape(depth_m)}, expected {shape}")
            depth = np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        # per pixel, the (row, column) of the nearest object pixel (itself inside)
        nearest = None if mask is None else distance_transform_edt(~mask, return_indices=True)[1]
        hidden = self._hidden_by(occluders, mask, depth, nearest)
        if uncertain is not None and np.shape(uncertain) == shape and np.any(uncertain):
            # pixels the mask and depth cannot settle say nothing, like those the hand hides
            hidden = np.asarray(uncertain, bool) if hidden is None else hidden | np.asarray(uncertain, bool)
        self.seen = None if hidden is None else (~hidden).astype(np.float64)
        if mask is not None:
            self.target_alpha = self._soft_mask(mask, hidden)
            self.target_rgb = self.target_alpha[..., None] * image[nearest[0], nearest[1]]
        if depth is not None and self.weights.get("depth", 0.0) > 0.0 and mask is not None:
            self.observed_depth = depth / float(self.config["depth_unit_m"])
            self.depth_valid = mask & (depth > 0)
        self.outside = self._totals()

    def _hidden_by(
        self,
        occluders: trimesh.Trimesh | None,
        mask: np.ndarray | None,
        depth: np.ndarray | None,
        nearest: np.ndarray | None,
    ) -> np.ndarray | None:
        """(H, W) bool: pixels the hand covers (grown by dilate_px for its calibration error)
        where the object is not seen and may be behind the hand; None when the hand is not known
        or not used."""
        settings = self.config.get("hand_occlusion", {})
        if occluders is None or len(occluders.faces) == 0 or not settings.get("enabled", False):
            return None
        if not np.isfinite(occluders.vertices).all():
            raise RenderInputError("non-finite hand mesh")
        hand = mesh_silhouette(occluders.vertices, occluders.faces, self.camera)
        if int(settings["dilate_px"]) > 0 and hand.any():
            hand = binary_dilation(hand, iterations=int(settings["dilate_px"]))
        if mask is None:
            return hand
        hidden = hand & ~mask
        margin = settings.get("behind_margin_m")
        if depth is not None and margin is not None:
            hidden &= ~self._behind_the_object(depth, nearest, float(margin))
        return hidden

    @staticmethod
    def _behind_the_object(depth: np.ndarray, nearest: np.ndarray, margin_m: float) -> np.ndarray:
        """(H, W) bool: pixels whose measured surface lies farther than the nearest seen object
        pixel's by more than margin_m (a palm behind the object): the object would be seen there
        if it reached them, so they say where it is not. Unknown depth on either side: False."""
        object_depth = depth[nearest[0], nearest[1]]
        return (depth > 0.0) & (object_depth > 0.0) & (depth > object_depth + margin_m)

    def _soft_mask(self, mask: np.ndarray, hidden: np.ndarray | None) -> np.ndarray:
        """Observed mask -> the coverage the backend would render there (H, W). Hidden pixels may
        be object: the border with them is no edge."""
        solid = mask if hidden is None else mask | hidden
        outside = distance_transform_edt(~mask)
        # Far from the edge: pixel centres on both sides of it are half a pixel from it.
        signed = np.where(mask, 0.5 - distance_transform_edt(solid), outside - 0.5)
        # Near it, invert a Gaussian blur of the mask instead (the blur of a straight edge at
        # distance d is Phi(-d / sigma)): sub-pixel, where whole-pixel distances leave the target
        # smaller than the true silhouette on slanted edges (docs/method.md, rendering).
        sigma = float(self.config["mask_edge_blur_px"])
        if sigma > 0.0:
            mask_blurred = gaussian_filter(mask.astype(np.float64), sigma)
            blurred = mask_blurred
            if hidden is not None:  # outside the mask, hidden pixels count as background
                blurred = np.where(mask, gaussian_filter(solid.astype(np.float64), sigma), mask_blurred)
            near = (blurred > 0.01) & (blurred < 0.99)
            signed[near] = -sigma * ndtri(blurred[near])
            if self.config.get("mask_edge_balance", False):
                signed[near] -= self._edge_offset(mask, mask_blurred, hidden, signed, near, sigma)
        return self.renderer.coverage(signed)

    def _edge_offset(
        self,
        mask: np.ndarray,
        mask_blurred: np.ndarray,
        hidden: np.ndarray | None,
        signed: np.ndarray,
        near: np.ndarray,
        sigma: float,
    ) -> float:
        """Outward shift [px] of the blur-read edge that gives the target the total coverage the
        renderer draws for the true outline: the mask's area (pixel centres count it without
        bias) plus the backend's edge excess x the outline's length (`outline_length`). Counted
        away from hidden pixels, whose border is no edge. The blur-read edge alone comes out
        0.03 px short per unit of outline on average (disks, squares: quantised, clipped ramps),
        which moves L_DR's minimum away from the camera by ~ bias x z x length / (2 area): 1 mm
        on a power drill bench frame."""
        region = np.ones(mask.shape, bool) if hidden is None else distance_transform_edt(~hidden) > 3.0 * sigma + 1.0
        length = outline_length(mask_blurred, region)
        coverage = self.renderer.coverage
        wanted = float(mask[region].sum()) + self._edge_excess_per_length(sigma) * length
        fixed = float(coverage(signed[region & ~near]).sum())
        edge = signed[region & near]
        surplus = lambda shift: fixed + float(coverage(edge - shift).sum()) - wanted  # noqa: E731
        if length <= 0.0 or surplus(-1.0) * surplus(1.0) > 0.0:
            return 0.0  # no visible edge, or one the blur cannot have read (> 1 px off): as read
        return brentq(surplus, -1.0, 1.0, xtol=1e-4)

    def _edge_excess_per_length(self, sigma: float) -> float:
        """Coverage the backend draws beyond the pixel-centre silhouette per px of outline as the
        blurred mask reads its length: measured on its own render at the reference pose (a scan's
        outline wiggles below a pixel: DEODR draws its full length, the blur reads it shorter:
        8 % on the can scan), else the straight-edge value of its edge model."""
        offsets = np.linspace(-4.0 * sigma, 4.0 * sigma, 4001)
        straight = float(trapezoid(self.renderer.coverage(offsets) - (offsets < 0.0), offsets))  # scipy: numpy 1 too
        if self.reference_pose is None or not np.isfinite(self.reference_pose).all():
            return straight
        T = np.asarray(self.reference_pose, dtype=np.float64)
        roi = roi_around(
            self.renderer.mesh.vertices,
            T,
            self.camera,
            int(self.config["roi_margin_px"]),
            float(self.config["min_depth_m"]),
        )
        if roi is None or roi.pixels == 0:
            return straight
        with torch.no_grad():
            rendering = self.renderer.render(
                torch.as_tensor(T[:3, :3]), torch.as_tensor(T[:3, 3]), roi, with_depth=False
            )
        drawn = rendering.silhouette.detach().cpu().numpy().astype(np.float64)
        inside = self.renderer.hard_silhouette(rendering)
        length = outline_length(gaussian_filter(inside.astype(np.float64), sigma))
        return straight if length < 1.0 else float(drawn.sum() - inside.sum()) / length

    def _totals(self) -> dict[str, float]:
        """Sum over the whole image of each target's square: the window adds its own part back."""
        totals = {}
        if self.target_alpha is not None:
            seen = np.ones(self.target_alpha.shape) if self.seen is None else self.seen
            totals = {
                "rgb": float((seen[..., None] * self.target_rgb**2).sum()),
                "silhouette": float((seen * self.target_alpha**2).sum()),
            }
        return totals

    # -- per pose -------------------------------------------------------------------------------

    def loss(self, rotation: torch.Tensor, translation: torch.Tensor) -> SourceLoss:
        if self.problem is not None:
            return degraded(self.problem, rotation, translation)
        T = pose_array(rotation, translation)
        if not np.isfinite(T).all():
            return degraded("non-finite pose", rotation, translation)
        roi = roi_around(
            self.renderer.mesh.vertices,
            T,
            self.camera,
            int(self.config["roi_margin_px"]),
            float(self.config["min_depth_m"]),
        )
        if roi is None or roi.pixels == 0:
            return degraded("object outside the image or behind the camera", rotation, translation)
        rendering = self.renderer.render(rotation, translation, roi, with_depth=self.depth_valid is not None)
        terms = self._terms(rendering)
        value = sum(self.weights[name] * term for name, term in terms.items())
        value = value.to(device=rotation.device, dtype=rotation.dtype) / self.camera_pixels
        if not torch.isfinite(value):
            return degraded("non-finite render loss", rotation, translation)
        return SourceLoss(value)

    @property
    def camera_pixels(self) -> int:
        return self.camera.width * self.camera.height

    def _terms(self, rendering) -> dict[str, torch.Tensor]:
        """Sums over the image (not yet divided by its pixel count) of each weighted term."""
        roi = rendering.roi

        def crop(image):
            return torch.as_tensor(roi.crop(image), dtype=rendering.rgb.dtype, device=rendering.rgb.device)

        seen = 1.0 if self.seen is None else crop(self.seen)
        terms = {}
        if self.target_alpha is None:  # no mask: composite over the observed image, compare
            observed = crop(self.observed_rgb)
            residual = rendering.rgb - rendering.silhouette[..., None] * observed
            terms["rgb"] = (seen * (residual**2).sum(dim=-1)).sum() / 3.0
        else:
            for name, rendered, target in (
                ("rgb", rendering.rgb, crop(self.target_rgb)),
                ("silhouette", rendering.silhouette, crop(self.target_alpha)),
            ):
                # (r - t)^2 - t^2 = r (r - 2 t), one sum over all channels: a per-pixel channel
                # sum of the strided crop first took 3x as long (4.3 vs 1.4 ms, 250 x 330 px)
                weight = seen[..., None] if torch.is_tensor(seen) and rendered.dim() == 3 else seen
                terms[name] = (weight * rendered * (rendered - 2.0 * target)).sum() + self.outside[name]
            terms["rgb"] = terms["rgb"] / 3.0
        if self.depth_valid is not None:
            valid = crop(self.depth_valid.astype(np.float64))
            unit = float(self.config["depth_unit_m"])
            residual = rendering.depth / unit - rendering.silhouette * crop(self.observed_depth)
            terms["depth"] = (valid * residual**2).sum()
        return {name: term for name, term in terms.items() if self.weights.get(name, 0.0) > 0.0}


def outline_length(blurred: np.ndarray, region: np.ndarray | None = None) -> float:
    """Length [px] of a binary image's outline from its Gaussian blur: the blur's gradient
    summed (over `region` only, if given); within 1.5 % on disks and squares."""
    gy, gx = np.gradient(blurred)
    magnitude = np.hypot(gx, gy)
    return float((magnitude if region is None else magnitude * region).sum())
