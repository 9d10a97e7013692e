"""One typed definition per file in config/: every accepted key, its type and a one-line description.

The shipped config/*.yaml hold the values (the defaults a user's copy starts from); loading a file
checks it against its definition here and rejects unknown keys and wrong types, naming the file,
the key and the nearest accepted key. ROS 2 params files (nodes.yaml, tactile_sim.yaml,
topic_echo.yaml) are checked against the nodes' declared parameters instead (config_check.py).
"""

from __future__ import annotations

import difflib
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Range = tuple[float, float]


def key(description: str, default: Any = ...) -> Any:
    return Field(default, description=description)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- refiner.yaml --------------------------------------------------------------------------------
class Variant(Section):
    sources: list[str] = key("active gradient sources")
    checkpoint: str | None = key("source whose loss picks the output state; null: the last state")
    start: Literal["initial", "lm", "touch_lm"] = key(
        "initial: the schedule from the initial pose; lm: a second-order solve first, then `polish`; "
        "touch_lm: touch and hand contact solved with the initial pose as prior (`touch_solve`), no schedule",
        "initial",
    )


class Step(Section):
    initial_mm: float = key("initial step length of each source [mm]")
    min_mm: float = key("refinement stops once the step cap reaches this [mm]")
    max_mm: float = key("initial step cap [mm]")
    decay: float = key("the cap shrinks by this factor every iteration")
    reversal_decay: float = key("... and by this whenever the update turned back against the previous one")
    grow: float = key("a source's step grows by this after its candidate improved its loss")
    shrink: float = key("... and shrinks by this after it did not")
    rms_decay: float = key("RMSProp preconditioning of each source's direction (0: the raw gradient)")


class PartialStep(Section):
    initial_mm: float | None = key("override of step.initial_mm", None)
    min_mm: float | None = key("override of step.min_mm", None)
    max_mm: float | None = key("override of step.max_mm", None)
    decay: float | None = key("override of step.decay", None)
    reversal_decay: float | None = key("override of step.reversal_decay", None)
    grow: float | None = key("override of step.grow", None)
    shrink: float | None = key("override of step.shrink", None)
    rms_decay: float | None = key("override of step.rms_decay", None)


class LossScale(Section):
    physics: float = key("scale of L_phys (a sum over hand points in contact, mm^2)")
    depth: float = key("scale of the mesh-to-depth loss (mm^2)")
    tactile: float = key("scale of the mesh-to-tactile loss (mm^2)")
    render: float = key("scale of L_DR (a mean over the image)")


class PartialLossScale(Section):
    physics: float | None = key("override of loss_scale.physics", None)
    depth: float | None = key("override of loss_scale.depth", None)
    tactile: float | None = key("override of loss_scale.tactile", None)
    render: float | None = key("override of loss_scale.render", None)


class CorrectedHand(Section):
    loss_scale: PartialLossScale = key("loss scales where the hand was corrected from depth", None)
    polish_iterations: int | None = key("polish iterations where the hand was corrected (0: the solve's pose)", None)


class SymmetryTurn(Section):
    enabled: bool = key("turn an axially symmetric body about its axis to the lowest checkpoint loss")
    moment_tolerance: float = key("symmetric: two principal moments within this share")
    grids_deg: list[Range] = key("search grids [range, step], coarse then fine [deg]")


class Restart(Section):
    iterations: int = key("iterations of the run restarted from the converged output (0: off)")


class Polish(Section):
    iterations: int = key("iterations of the heuristic refiner from the second-order solve's pose")
    step: PartialStep = key("step schedule overrides of the polish (short, small steps)")
    grids_deg: list[Range] = key("symmetry turn grids after the polish [range, step] (deg)")


class Plausibility(Section):
    max_depth_loss_mm2: float = key("a final depth loss above this labels the result implausible")
    max_intersection_cm3: float = key("an intersection volume above this at the refined pose labels it implausible")


class TouchSolve(Section):
    iterations: int = key("Levenberg-Marquardt iterations of the touch solve")
    sigma_mm: float = key("per-axis sigma of the initial pose's position error [mm]")
    sigma_deg: float = key("per-axis sigma of the initial pose's orientation error [deg]")


class RefinerConfig(Section):
    iterations: int = key("N: stop after this many iterations (paper: 400)")
    variant: str = key("which of `variants` a node runs")
    variants: dict[str, Variant] = key("name -> active sources and checkpoint source")
    step: Step = key("adaptive step lengths and their cap")
    min_relative_improvement: float = key("a candidate improves its source only by more than this share")
    improvement: Literal["absolute", "relative"] = key("how dL_i is measured for the weights alpha_i")
    loss_scale: LossScale = key("brings the losses to comparable units")
    corrected_hand: CorrectedHand = key("overrides where the hand was corrected from depth", None)
    symmetry_turn: SymmetryTurn = key("the output turned about a symmetry axis")
    restart: Restart = key("one more run from the converged output")
    polish: Polish = key("variants with `start: lm`: the heuristic refiner's short run from the solve's pose")
    start_hypotheses: int = key("variants with `start: lm`: solves from the initial pose and K-1 drawn about it", 1)
    checkpoint_tolerance: float = key("a state within this share of the lowest checkpoint loss ties with it")
    physics_hand_band_m: float = key("hand points within this of the object at the initial pose take part [m]")
    plausibility: Plausibility = key("limits beyond which a refined pose is labelled implausible")
    touch_solve: TouchSolve = key("variants with `start: touch_lm`: the solve and its prior", None)
    torch_threads: int = key("torch CPU threads")
    device: Literal["cpu", "cuda", "auto"] = key("compute device of the Warp kernels and torch renderer")


# --- gradients.yaml ------------------------------------------------------------------------------
class MaskCheck(Section):
    band_px: int = key("pixels within this of the mask outline are checked against depth")
    same_surface_m: float = key("the object's surface grows from inside the mask in depth steps below this")
    off_surface_m: float = key("a mask pixel this far in depth from that surface is not the object")
    hand_dilate_px: int = key("outside the mask, the hand's silhouette grown by this is no object")
    hand_surface_m: float = key("a mask pixel within this of the posed hand's depth shows the hand")
    occluder_in_front_m: float | None = key("a surface this far in front of the object occludes it", None)


class DepthGradient(Section):
    max_points: int = key("observed object points used per frame (fixed-seed subset)")
    max_dense_points: int = key("points the triangle term pairs triangles with")
    max_triangles: int = key("triangles of the mesh-to-points term")
    mesh_to_points: Literal["all", "visible", "none"] = key("which triangles pull towards the points")
    max_incidence_deg: float = key("visible: triangles seen more obliquely leave the triangle term")
    visibility_refresh_m: float = key("re-cast the visible triangles after the pose moved this far")
    visibility_refresh_deg: float = key("... or turned this far")
    max_pair_distance_m: float = key("pairs farther apart are outliers")
    min_points: int = key("fewer points: zero weight, degraded")
    huber_mm: float | None = key("pair distances beyond this grow linearly (null: squares)")


class TactileGradient(Section):
    mesh_to_points: Literal["all", "visible", "none"] = key("which triangles pull towards the taxels")
    max_pair_distance_m: float = key("pairs farther apart are outliers")
    min_contacts: int = key("fewer taxels in contact: zero weight, degraded")
    huber_mm: float | None = key("skin-gap residuals beyond this grow linearly (null: squares)")
    surface_from_force: bool = key("Eq. 2 against the gap each taxel's force implies (false: bare taxels)")


class GradientsConfig(Section):
    mask_check: MaskCheck = key("the object mask checked against depth near its outline")
    depth: DepthGradient = key("mesh-to-depth distance")
    tactile: TactileGradient = key("mesh-to-tactile distance")


# --- physics.yaml --------------------------------------------------------------------------------
class Sdf(Section):
    spacing_m: float = key("grid spacing of the object's baked SDF")
    margin_m: float = key("grid extends this far beyond the mesh bounds")


class Contact(Section):
    stiffness_n_per_m: float = key("penalty normal force per hand point per metre of penetration")
    damping_s: float = key("Hunt-Crossley damping")
    friction_mu: float = key("Coulomb coefficient")
    friction_eps_m_s: float = key("regularised Coulomb: tangential speed below this scales friction")
    leak: float = key("share of the gradient a point just outside still passes back")
    leak_distance_m: float = key("... fading to zero at this distance from the surface")
    skin_compliance_m: float = key("penetration the soft skin takes without pushing back", 0.0)


class ContactOverride(Section):
    stiffness_n_per_m: float | None = key("override of contact.stiffness_n_per_m", None)
    damping_s: float | None = key("override of contact.damping_s", None)
    friction_mu: float | None = key("override of contact.friction_mu", None)
    friction_eps_m_s: float | None = key("override of contact.friction_eps_m_s", None)
    leak: float | None = key("override of contact.leak", None)
    leak_distance_m: float | None = key("override of contact.leak_distance_m", None)
    skin_compliance_m: float | None = key("override of contact.skin_compliance_m", None)


class Rollout(Section):
    steps: int = key("simulation steps of the rollout inside L_DP")
    dt_s: float = key("time step [s]")
    gravity_m_s2: tuple[float, float, float] = key("gravity in the camera frame")
    reach_m: float = key("simulate only the hand points within this of the leak zone (0: all)", 0.0)


class PhysicsLoss(Section):
    displacement_weight: float = key("|COM displacement after the rollout|^2 [mm^2]")
    rotation_weight: float = key("(object radius * rotation angle)^2 [mm^2]")
    penetration_weight: float = key("mean over steps of the summed squared penetrations [mm^2]")
    lambda_translation: float = key("lambda of Eq. 1 on |t - t_initial|^2 [mm^2]")


class Stability(Section):
    duration_s: float = key("forward simulation length of the stability metrics [s]")
    dt_s: float = key("its time step [s]")
    contact: ContactOverride = key("overrides of `contact` for the metric's hand")
    gravity_m_s2: tuple[float, float, float] = key("gravity in the hand base frame")
    success_displacement_m: float = key("SR counts SD below this")
    contact_distance_m: float = key("CP: hand within this of the object counts as contact")


class PhysicsConfig(Section):
    sdf: Sdf = key("the object's baked signed distance field")
    hand_point_spacing_m: float = key("hand collision surface sampled this densely")
    hand_point_band_m: float = key("hand points farther from the object at its initial pose are dropped")
    contact: Contact = key("the penalty contact model")
    rollout: Rollout = key("the short differentiable simulation inside L_DP")
    loss: PhysicsLoss = key("L_phys = L_DP + lambda |dt|^2")
    stability: Stability = key("DeepSimHO stability metrics (forward simulation, no gradient)")


# --- render.yaml ---------------------------------------------------------------------------------
class HandOcclusion(Section):
    enabled: bool = key("pixels the hand covers where the object is not seen leave the loss")
    dilate_px: int = key("the hand's silhouette grown by this")
    behind_margin_m: float | None = key("... unless the depth there is this much farther (null: never)")


class RenderWeights(Section):
    rgb: float = key("weight of the colour term")
    silhouette: float = key("weight of the soft coverage term")
    depth: float = key("weight of the depth term")


class RenderConfig(Section):
    backend: str = key("renderer backend by name (core/gradients/render/factory.py RENDERERS)")
    device: Literal["cpu", "cuda", "auto"] = key("soft_torch only: compute device")
    cuda_dtype: Literal["float32", "float64"] = key("soft_torch on CUDA computes in this dtype")
    deodr_texture_px: int = key("deodr: longer texture side resampled to this")
    sigma_px: float = key("silhouette edge softness [px]")
    roi_margin_px: int = key("rendered window = projected bounding box + this margin")
    min_depth_m: float = key("the object must be in front of this plane, else degraded")
    min_face_area_m2: float = key("smaller mesh faces are dropped")
    min_screen_area_px2: float = key("faces projecting smaller than this are skipped")
    min_mask_pixels: int = key("fewer observed object pixels: degraded (weight 0)")
    mask_edge_blur_px: float = key("sub-pixel edge of the observed mask (0: whole pixels)")
    mask_edge_balance: bool = key("shift that edge so the target keeps the outline's coverage")
    hand_occlusion: HandOcclusion = key("the hand's silhouette as an occluder")
    weights: RenderWeights = key("L_DR = w_rgb L_rgb + w_silhouette L_mask + w_depth L_depth")
    depth_unit_m: float = key("unit of the depth term")


# --- hand.yaml -----------------------------------------------------------------------------------
class ObjectContacts(Section):
    enabled: bool = key("refit the hand with its touching taxels on the refined object (hidden fingers)")
    std_m: float = key("sigma a taxel's distance to the object surface is held to, against its force's gap")
    huber_m: float = key("misfits beyond this grow linearly (a contact the pose does not explain)")
    min_taxels: int = key("fewer taxels in contact: no refit")
    rounds: int = key("re-associations, from the frame's depth fit")
    every_s: float = key("at most one such refit in this long (0: every frame)")
    average: int = key("a camera-off frame recalls the mean of the last this many")
    as_prior: bool = key("a later frame's depth fit expects the offsets near that mean, not the encoders'")


class HandCorrection(Section):
    enabled: bool = key("correct the hand from its own depth pixels")
    model_spacing_m: float = key("hand surface sampled this densely for the fit")
    search_px: int = key("depth pixels within this of the predicted hand silhouette")
    object_margin_px: int = key("... and this far off the object's mask")
    max_points: int = key("observed points used (a fixed random subset)")
    min_points: int = key("fewer: the hand is not corrected (labelled)")
    max_distance_m: float = key("largest observed-to-model pair distance")
    occluder_margin_m: float = key("a depth point this far in front of its model point is an occluder, not the hand")
    huber_m: float = key("point-to-plane residuals beyond this grow linearly")
    depth_std_m: float = key("depth noise the residuals are weighed against")
    effective_points: int = key("the data term counts as this many independent points")
    joint_offset_std_deg: float = key("prior on each joint's encoder offset")
    base_rotation_std_deg: float = key("prior on the base pose's rotation correction, per axis")
    base_translation_std_m: float = key("prior on the base pose's translation correction, per axis")
    min_improvement_m: float = key("a fit must lower the rms by this, else the encoders' hand stays")
    rounds: int = key("re-associations")
    iterations: int = key("L-BFGS iterations per round")
    recall_s: float = key("a frame that shows none of the hand takes the last fit this recent (0: never)")
    object_contacts: ObjectContacts = key(
        "after a refinement the camera vouched for: refit with the taxels on the object"
    )


class HandConfig(Section):
    urdf: str = key("URDF of the hand, relative to the package share dir or absolute")
    package_dirs: dict[str, str] = key("package://<pkg>/ -> directory")
    joint_name_maps: dict[str, dict[str, str]] = key("driver joint names -> URDF joint names, per driver")
    surface_point_spacing_m: float = key("surface sampling of the collision geometry")
    correction: HandCorrection = key("the hand corrected from its depth pixels")


# --- tactile.yaml, xela_layout.yaml --------------------------------------------------------------
class TactileConfig(Section):
    layout: str = key("taxel layout: config/<layout>.yaml")
    layout_surface_tolerance_m: float = key("taxels farther from the hand's collision surface are moved onto it")
    contact_margin_m: float = key("an object surface this close already presses the skin")
    stiffness_units_per_m: float = key("normal force per metre of compression")
    max_units: float = key("sensor saturation")
    newtons_per_unit: float = key("calibration of balanced episodes (their force_scale)")
    shear_ratio: float = key("shear from the tilt between object and taxel normals")
    noise_std_units: float = key("Gaussian noise on every axis")
    contact_threshold_units: float = key("gamma: a taxel over this is in contact")
    contact_noise_factor: float = key("gamma rises to this x the reading's robust noise sigma")


class Taxel(Section):
    id: int = key("taxel id")
    link: str = key("URDF link carrying the taxel")
    patch: str = key("sensor patch name")
    position: tuple[float, float, float] = key("taxel centre in its link frame [m]")
    normal: tuple[float, float, float] = key("outward normal in its link frame")


class TaxelLayout(Section):
    taxels: list[Taxel] = key("every taxel of the skin")


# --- estimator.yaml ------------------------------------------------------------------------------
class EstimatorInputsConfig(Section):
    max_observed_points: int = key("random subset of the segmented depth points")
    min_observed_points: int = key("fewer: no estimate")
    max_contacts: int = key("contact points used at most")


class ModelConfig(Section):
    surface_points: int = key("samples on the object surface")
    seed: int = key("sampling seed")


class SymmetryConfig(Section):
    tolerance_m: float = key("a rotation maps the surface onto itself within this mean distance")
    orders: list[int] = key("discrete orders tried about each axis")
    continuous_test_deg: list[float] = key("an axis is continuous when all of these angles pass")
    continuous_samples: int = key("equivalents drawn about a continuous axis")
    max_group_size: int = key("largest symmetry group kept")


class Stage(Section):
    icp_iterations: int = key("ICP iterations on every candidate")
    keep: int = key("candidates kept by score")
    jitter_m: float = key("restarts shifted by this along the camera axes", 0.0)
    points: int | None = key("observed points used (null: all)", None)


class ClassicalConfig(Section):
    voxel_m: float = key("FPFH + RANSAC on clouds downsampled to this")
    fpfh_radius_voxels: float = key("FPFH radius in voxels")
    normal_radius_voxels: float = key("normal radius in voxels")
    ransac_runs: int = key("independent RANSAC hypotheses")
    ransac_iterations: int = key("RANSAC iterations per run")
    ransac_confidence: float = key("RANSAC confidence")
    rotation_grid: list[str] = key("scipy rotation groups as extra hypotheses")
    stages: list[Stage] = key("ICP stages over the candidates")


class RegistrationConfig(Section):
    contact_weight: float = key("contacts' total weight relative to the depth points'")
    max_pair_distance_m: list[float] = key("schedule over the iterations, coarse to fine")
    inlier_distance_m: float = key("score: an observed point this close fits")
    contact_distance_m: float = key("score: a contact this close agrees")
    free_space_margin_m: float = key("score: model seen this far in front of the scene violates")
    free_space_weight: float = key("score weight of free-space violations")
    contact_weight_in_score: float = key("score weight of agreeing contacts")
    colour_depth_tolerance_m: float = key("colour check: only pixels whose depth matches the model")


class TrainConfig(Section):
    episodes: int = key("generated training episodes per object")
    steps: int = key("frames per training episode")
    epochs: int = key("training epochs")
    batch: int = key("batch size")
    learning_rate: float = key("Adam learning rate")
    augment_rotation_deg: float = key("rotations about the camera centre")
    seed: int = key("training seed")


class LearnedConfig(Section):
    checkpoint_dir: str = key("under the cache dir")
    points: int = key("depth points per sample")
    contacts: int = key("contact points per sample")
    width: int = key("feature width of the point MLPs")
    polish_stages: list[Stage] = key("the network's hypotheses polished like the classical ones")
    top_votes: int = key("hypotheses: the confidence-weighted mean and the best votes")
    axis_flips: bool = key("each also turned by pi about the observed principal axes")
    train: TrainConfig = key("`tpr train-estimator`")


class EstimatorConfig(Section):
    default: str = key("the estimator the bench method `estimator` and the node use")
    inputs: EstimatorInputsConfig = key("what an estimator reads from a frame")
    model: ModelConfig = key("the object's model cloud")
    symmetry: SymmetryConfig = key("symmetries found on the model")
    classical: ClassicalConfig = key("FPFH + RANSAC + ICP")
    registration: RegistrationConfig = key("point-to-plane ICP of depth + contact points")
    learned: LearnedConfig = key("the learned visuo-tactile estimator")


# --- generator.yaml, realism.yaml, camera.yaml ---------------------------------------------------
class Finger(Section):
    spread: str = key("abduction joint")
    flex: list[str] = key("closing joints, proximal to distal")
    links: list[str] = key("links, proximal to distal")


class Placement(Section):
    y_range: Range = key("object centroid y in the hand base frame [m]")
    z_range: Range = key("object centroid z [m]")
    palm_gap_range: Range = key("clearance to the palm [m]")


class Closing(Section):
    target_penetration_m: float = key("fingers stop once they press this far")
    step: float = key("closing parameter step")
    no_contact_stop: float = key("where a finger that touches nothing stops")
    min_fingers_in_contact: int = key("thumb + at least this many fingers")
    max_attempts: int = key("grasp attempts")


class Trajectory(Section):
    camera_distance_range: Range = key("hand base to camera [m]")
    view_cone_deg: float = key("camera direction around the hand's grasp side")
    translation_amplitude_m: float = key("smooth random arm motion")
    rotation_amplitude_rad: float = key("... and turning")
    frame_rate_hz: float = key("camera rate")
    start_time_s: float = key("stamps of episode k start at start_time_s + 1000 k")


class InHand(Section):
    turn_rate_deg_s: Range = key("finger-driven turning rate about an axis through the centroid [deg/s]")
    slip_m_s: Range = key("slip speed along one direction [m/s]")
    regrasp_s: float = key("one finger lifted this long, then closed again [s]")
    palm_tolerance_m: float = key("a step pressing the object deeper into the palm is not taken [m]")
    max_penetration_m: float = key("a step that would press a finger deeper than this is not taken [m]")
    reopen_rad: float = key("each frame a finger opens this far from its last joints, then closes again [rad]")


class BalancedForces(Section):
    rest_orientation: Literal["holding", "fixed"] = key(
        "how the arm holds the hand at the rest pose: holding (gravity along the direction the grasp's "
        "contacts carry best, sim/forces.holding_direction) or fixed (gravity_hand_rest_m_s2)"
    )
    gravity_hand_rest_m_s2: tuple[float, float, float] = key(
        "gravity in the hand base frame at the rest pose (fixed; holding's fallback for a grasp that holds nothing)"
    )
    friction_mu: float = key("friction cones the contact forces keep to where they can")
    squeeze_share: float = key("share of the skin's penalty forces kept as the grasp's internal force")


class GeneratorConfig(Section):
    fingers: dict[str, Finger] = key("per finger: its joints and links")
    spread_range: Range = key("random abduction of index/middle/ring [rad]")
    thumb_opposition_range: Range = key("thumb opposition [rad]")
    placement: Placement = key("object centroid in the hand base frame before closing")
    closing: Closing = key("finger closing")
    surface_point_spacing_m: float = key("surface sampling of the generator's contact checks")
    trajectory: Trajectory = key("arm trajectory in front of the fixed camera")
    joint_noise_std_rad: float = key("encoder noise on the recorded joint states")
    in_hand: InHand = key("in-hand motion of `tpr generate --motion in_hand`")
    forces: BalancedForces = key("contact forces of `tpr generate --forces balanced`")


class DepthErrors(Section):
    axial_std_at_1m: float = key("depth noise sigma = c z^2")
    correlated_share: float = key("share of the variance in smooth blotches")
    correlation_px: float = key("blotch size")
    bias_std: float = key("per-episode depth bias [m]")
    edge_dropout: float = key("chance of losing a pixel at a depth edge")
    edge_jump: float = key("a depth edge is a jump of this [m]")
    shadow_baseline: float = key("stereo baseline of the shadows [m]")
    flying_pixels: float = key("chance of a flying pixel at an edge")
    speckle_holes: float = key("share of pixels lost at random")


class MaskErrors(Section):
    outline_bias_std_px: float = key("outline grown/shrunk per episode")
    outline_std_px: float = key("smooth wobble along the outline")
    outline_scale_px: float = key("wobble length scale")
    bleed_chance: float = key("chance of bleeding onto a touching finger")
    bleed_px: float = key("bleed width")
    bleed_radius_px: float = key("bleed extent along the finger")
    hole_chance: float = key("chance of a hole")
    blob_chance: float = key("chance of a false blob")
    blob_radius_px: Range = key("false blob radius range")


class HandErrors(Section):
    encoder_offset_std_deg: float = key("per-episode encoder offsets")
    encoder_noise_std_deg: float = key("per-frame encoder noise")
    base_translation_std: float = key("hand-camera calibration error per axis [m]")
    base_rotation_std_deg: float = key("... and rotation per axis")


class TouchErrors(Section):
    dead_taxels: float = key("share of dead taxels")
    noise_std: float = key("force noise [sensor units]")
    crosstalk: float = key("share leaking to neighbours")
    crosstalk_radius: float = key("neighbours within this [m]")
    zero_offset_std: float = key("per-episode zero offsets")
    zero_drift_std: float = key("zero drift per frame")
    latency_frames: tuple[int, int] = key("touch latency range [frames]")


class RgbErrors(Section):
    gain_std: float = key("exposure gain")
    white_balance_std: float = key("white balance per channel")
    noise_std: float = key("colour noise")


class ViewErrors(Section):
    occlusion_range: Range = key("share of the object hidden by the fingers in the first frames")
    view_cone_deg: float = key("camera direction cone")
    attempts: int = key("views tried to meet the occlusion")


class RealismPreset(Section):
    depth: DepthErrors | None = key("depth camera errors", None)
    mask: MaskErrors | None = key("segmentation errors", None)
    hand: HandErrors | None = key("encoder and calibration errors", None)
    touch: TouchErrors | None = key("tactile skin errors", None)
    rgb: RgbErrors | None = key("colour errors", None)
    view: ViewErrors | None = key("occluding views", None)


class RealismConfig(Section):
    presets: dict[str, RealismPreset] = key("name -> sensor errors (`tpr generate --realism`)")


class CameraConfig(Section):
    width: int = key("image width [px]")
    height: int = key("image height [px]")
    fx: float = key("focal length x [px]")
    fy: float = key("focal length y [px]")
    cx: float = key("principal point x [px]")
    cy: float = key("principal point y [px]")
    frame_id: str = key("optical frame id")
    depth_scale_m: float = key("16UC1 depth unit")
    depth_noise_std_at_1m: float = key("generator's depth noise")
    depth_min_m: float = key("nearest valid depth")
    depth_max_m: float = key("farthest valid depth")
    rgb_noise_std: float = key("additive colour noise")
    background_rgb: tuple[int, int, int] = key("background colour")
    hand_rgb: tuple[int, int, int] = key("hand colour")


# --- bench, baselines, metrics, demo, objects, topics -------------------------------------------
class NoiseSetting(Section):
    mean_position_error_cm: float = key("mean position error of the initial poses")
    mean_orientation_error_deg: float = key("mean orientation error of the initial poses")
    seed: int = key("noise seed")


class Overlay(Section):
    max_frames: int = key("overlay images per report")


class BenchConfig(Section):
    noise: dict[str, NoiseSetting] = key("initial pose noise settings")
    methods: list[str] = key("methods compared by `tpr bench`")
    paper_tables: dict[str, Any] = key("the paper's tables and its time per frame, for comparison")
    overlay: Overlay = key("overlay images")


class Icp(Section):
    model_points: int = key("model surface samples")
    max_observed_points: int = key("observed points used")
    max_correspondence_distance_m: float = key("largest pair distance")
    iterations: int = key("ICP iterations")
    min_points: int = key("fewer observed points: no result")


class BaselinesConfig(Section):
    icp: Icp = key("the ICP baseline")


class ContactAreaMetric(Section):
    samples: int = key("surface samples")
    threshold_m: float = key("object surface within this of the hand counts")
    seed: int = key("sampling seed")


class PenetrationMetric(Section):
    object_samples: int = key("object samples")


class MetricsConfig(Section):
    contact_area: ContactAreaMetric = key("CA")
    penetration: PenetrationMetric = key("deepest penetration")


class DemoEpisode(Section):
    object: str = key("object of the demo episode")
    frames: int = key("frames")
    seed: int = key("seed")


class DemoConfig(Section):
    episode: DemoEpisode = key("the bundled demo episode")
    replay_rate: float = key("replay speed factor")
    estimator: str = key("estimator_node mode")
    noise_setting: str = key("ground_truth_noise setting")
    iterations: int = key("0: config/refiner.yaml's")
    graph_start_timeout_s: float = key("node start-up and discovery")
    frame_timeout_s: float = key("the longest wait for one more refined pose")


class CatalogObject(Section):
    mesh: str = key("mesh path: absolute, or relative to the share dir (bundled) or to the catalog file (a user's)")
    mass_kg: float = key("mass")
    scale: float = key("the mesh's vertices times this are metres (0.001: a mesh in millimetres)", 1.0)
    symmetry: Literal["auto", "none"] = key(
        "auto: an axis where two principal moments agree (the cans' turn search); none: never", "auto"
    )
    com_m: list[float] | None = key("centre of mass in the mesh frame [m] (default: the convex hull's)", None)
    inertia_kg_m2: list[list[float]] | None = key(
        "3x3 inertia about the centre of mass, mesh axes (default: the hull's, scaled to the mass)", None
    )


class ObjectsConfig(Section):
    objects: dict[str, CatalogObject] = key("catalog id -> mesh and mass")


class TopicsConfig(Section):
    color_image: str = key("RGB image")
    color_camera_info: str = key("RGB intrinsics")
    depth_image: str = key("aligned depth image")
    depth_camera_info: str = key("depth intrinsics")
    object_mask: str = key("object mask")
    joint_states: str = key("hand joint states")
    tactile: str = key("tactile readings")
    hand_pose: str = key("hand base pose in the camera frame")
    ground_truth_pose: str = key("ground-truth object pose (replay only)")
    object_id: str = key("object id")
    ground_truth_joint_states: str = key("true joint states (generated episodes)")
    ground_truth_hand_pose: str = key("true hand base pose (generated episodes)")
    realism: str = key("the drawn sensor errors (generated episodes)")
    dynamics: str = key("the force model, true mass and gravity (balanced generated episodes)")


# --- mass.yaml ----------------------------------------------------------------------------------
class OnlineMassConfig(Section):
    window_s: float = key("the mass while tracking: from the frames of the last this many seconds [s]")
    every_s: float = key("... refreshed this often [s]")


class MassConfig(Section):
    savgol_window: int = key("frames in the Savitzky-Golay window of the accelerations")
    min_turn_deg: float = key("the load must turn at least this far in the hand")
    min_frames: int = key("fewer usable frames: no estimate")
    drift_ratios: list[float] = key("zero drift per frame against noise (variance ratios) tried; the likeliest kept")
    min_taxels: int = key("fewer taxels over gamma (median): the skin does not carry the load")
    unseen_gap_m: float = key("a dead taxel closer to the object's surface may carry unseen load [m]")
    contact_share: float = key("a taxel over gamma in this share of the frames is summed in every frame")
    contact_radius_m: float = key("... and so is every taxel of its link this close to one [m]")
    hand_fit_every: int = key("encoder offsets from the hand fit on every n-th frame, median (0: off)")
    poses: Literal["tracked", "truth"] = key("object poses the accelerations come from")
    crosstalk_share: float = key("the skin's characterised crosstalk, undone before summing (episodes: their own)")
    crosstalk_radius_m: float = key("... between taxels of one link within this distance [m]")
    online: OnlineMassConfig = key("refiner_node mode:=track: the mass on /diagnostics")


# --- tracker.yaml --------------------------------------------------------------------------------
class TrackerSolver(Section):
    iterations: int = key("Levenberg-Marquardt iterations per frame")
    damping: float = key("lambda relative to the normal matrix's diagonal")
    max_step_mm: float = key("a step is scaled down to this translation [mm]")
    max_step_deg: float = key("... and this rotation [deg]")
    stop_mm: float = key("converged once a step moves the object's rim less than this [mm]")
    prior_mm: float = key("motion prior: sigma of the deviation from the prediction per frame [mm]")
    prior_deg: float = key("... and of its rotation [deg]")


class TrackerResidual(Section):
    """What every residual block of the tracker has (Tracker._block reads it)."""

    sigma_mm: float = key("residual scale [mm]")
    robust_k: float = key("Huber threshold [sigmas]")


class TrackerDepth(TrackerResidual):
    max_points: int = key("random subset of the mask's depth points")
    outlier_mm: float = key("farther from the surface: no weight [mm]")
    hand_exclusion_mm: float = key("depth points this close to the sensed hand are left out [mm]")


class TrackerTouch(TrackerResidual):
    outlier_mm: float = key("farther from the gap: no weight [mm]")


class TrackerPenetration(TrackerResidual):
    point_spacing_mm: float = key("hand surface sampling [mm]")
    band_mm: float = key("hand points farther from the object at the prediction are left out [mm]")
    compliance_mm: float = key("penetration the soft skin takes without pushing back [mm]")


class TrackerMotion(Section):
    velocity_decay: float = key("share of the object's velocity in the hand carried to the next frame")
    max_gap_s: float = key("frames farther apart (or a time jump back): no velocity [s]")
    max_speed_m_s: float = key("faster in the hand than this is a jump, not a velocity [m/s]")
    max_turn_deg_s: float = key("... or turning faster than this [deg/s]")
    reach_mm: float = key("hand points this far beyond the object's reach at the prediction are left out [mm]")


class TrackerConfidence(Section):
    min_depth_points: int = key("fewer depth points: depth not judged (labelled degraded)")
    min_depth_inliers: float = key("share of depth points within outlier_mm of the surface, else lost")
    max_depth_rms_mm: float = key("inlier rms beyond this: lost [mm]")
    min_touch_points: int = key("with this many taxels in contact ...")
    min_touch_inliers: float = key("... this share must lie within touch outlier_mm of the surface, else lost")


class TrackerTextureTurn(Section):
    enabled: bool = key("turn an axially symmetric object about its axis to the image's texture")
    moment_tolerance: float = key("symmetric: two principal moments within this share")
    grids_deg: list[Range] = key("[range, step] grids about the axis [deg], coarse then fine")
    start_grids_deg: list[Range] = key("... on a (re)initialisation [deg]")
    surface_points: int = key("textured surface samples")
    depth_tolerance_mm: float = key("a sample counts where its depth agrees with the scene's this well [mm]")


class TrackerStart(Section):
    iterations: int = key("solver iterations")
    hypotheses: int = key("solves from the pose and hypotheses - 1 drawn about it; the best fit is kept")
    spread_mm: float = key("sigma of the drawn shifts [mm]")
    spread_deg: float = key("sigma of the drawn turns about the centre of mass [deg]")
    seed: int = key("seed of the draws")
    tie: float = key("fits within this share of the best tie; the one nearest the start wins")


class TrackerRecovery(Section):
    hypotheses: int = key("start solves from the last good pose carried by the hand; 0: off")
    every_frames: int = key("tried once this many lost frames in a row, then again after as many")
    min_depth_inliers: float = key("a recovery is kept only with this share of depth inliers")
    max_depth_rms_mm: float = key("... and depth rms no larger")
    min_touch_points: int = key("... and at least this many taxels in contact, all inliers")


class TrackerConfig(Section):
    device: Literal["cpu", "cuda", "auto"] = key("compute device")
    start: TrackerStart = key("a (re)initialisation from an estimate or a full refinement")
    recovery: TrackerRecovery = key("a lost track restarted from its own last pose")
    solver: TrackerSolver = key("per-frame solver")
    depth: TrackerDepth = key("depth residuals")
    touch: TrackerTouch = key("touch residuals")
    penetration: TrackerPenetration = key("hand penetration residuals")
    motion: TrackerMotion = key("motion model")
    confidence: TrackerConfidence = key("when a pose is lost")
    texture_turn: TrackerTextureTurn = key("the turn of a can about its axis, from texture")


SCHEMAS: dict[str, type[Section]] = {
    "baselines": BaselinesConfig,
    "bench": BenchConfig,
    "camera": CameraConfig,
    "demo": DemoConfig,
    "estimator": EstimatorConfig,
    "generator": GeneratorConfig,
    "gradients": GradientsConfig,
    "hand": HandConfig,
    "metrics": MetricsConfig,
    "objects": ObjectsConfig,
    "physics": PhysicsConfig,
    "realism": RealismConfig,
    "mass": MassConfig,
    "refiner": RefinerConfig,
    "render": RenderConfig,
    "tactile": TactileConfig,
    "topics": TopicsConfig,
    "tracker": TrackerConfig,
    "xela_layout": TaxelLayout,
}
ROS_PARAMS_FILES = ("nodes", "tactile_sim", "topic_echo")  # checked against the nodes' parameters


class ConfigError(ValueError):
    """A config file that does not match its definition; the message names file, key and fix."""


def validate(name: str, content: dict, path: str) -> None:
    """Check config/<name>.yaml's content against its definition (unknown names pass: a user's
    extra layout file, say)."""
    schema = SCHEMAS.get(name)
    if schema is None:
        return
    try:
        schema.model_validate(content)
    except ValidationError as exc:
        raise ConfigError("\n".join(_explain(schema, error, path) for error in exc.errors())) from None


def _explain(schema: type[Section], error: dict, path: str) -> str:
    location = tuple(error["loc"])
    dotted = ".".join(str(part) for part in location)
    if error["type"] == "extra_forbidden":
        accepted = sorted(_model_at(schema, location[:-1]).model_fields)
        near = difflib.get_close_matches(str(location[-1]), accepted, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        return f"{path}: unknown key '{dotted}'{hint} (accepted here: {', '.join(accepted)})"
    if error["type"] == "missing":
        return f"{path}: missing key '{dotted}'"
    return f"{path}: '{dotted}': {error['msg']} (got {error.get('input')!r})"


def _model_at(schema: type[Section], location: tuple) -> type[Section]:
    """The definition that holds the key at `location` (through dict keys and list indices)."""
    annotation: Any = schema
    for part in location:
        annotation = _required(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = annotation.model_fields[part].annotation
        else:  # dict[str, X] (part: a key) or list[X] (part: an index)
            annotation = get_args(annotation)[-1]
    return _required(annotation)


def _required(annotation: Any) -> Any:
    """X from X | None."""
    if get_origin(annotation) in (Union, types.UnionType):
        return next(a for a in get_args(annotation) if a is not type(None))
    return annotation
