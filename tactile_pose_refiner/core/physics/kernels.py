"""Warp kernels of the contact model: SDF sampling, the penalty contact wrench on the object from
the hand's points, and the torch autograd bridge through the kernel's adjoint. Our own Warp code:
warp.sim is gone and Newton's contact gradients are approximate (team notes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import warp as wp

if TYPE_CHECKING:
    from tactile_pose_refiner.core.physics.contact import HandContactModel

wp.config.quiet = True


# --- Warp: SDF sampling and the contact wrench ------------------------------------------------
@wp.func
def grid_cell(shape: wp.vec3i, origin: wp.vec3, spacing: float, p: wp.vec3):
    """Cell of p in a grid: lower corner (i, j, k), fractions in it, and how far p lies outside
    the grid box (p is clamped onto the box)."""
    upper = origin + spacing * wp.vec3(float(shape[0] - 1), float(shape[1] - 1), float(shape[2] - 1))
    q = wp.vec3(
        wp.clamp(p[0], origin[0], upper[0]), wp.clamp(p[1], origin[1], upper[1]), wp.clamp(p[2], origin[2], upper[2])
    )
    u = (q - origin) / spacing
    i = wp.min(int(wp.floor(u[0])), shape[0] - 2)
    j = wp.min(int(wp.floor(u[1])), shape[1] - 2)
    k = wp.min(int(wp.floor(u[2])), shape[2] - 2)
    return wp.vec3i(i, j, k), u - wp.vec3(float(i), float(j), float(k)), wp.length(p - q)


@wp.func
def trilinear(values: wp.array3d(dtype=Any), c: wp.vec3i, f: wp.vec3):
    """Trilinear interpolation in cell c at fractions f (generic: distances and gradients)."""
    a = wp.lerp(values[c[0], c[1], c[2]], values[c[0] + 1, c[1], c[2]], f[0])
    b = wp.lerp(values[c[0], c[1] + 1, c[2]], values[c[0] + 1, c[1] + 1, c[2]], f[0])
    d = wp.lerp(values[c[0], c[1], c[2] + 1], values[c[0] + 1, c[1], c[2] + 1], f[0])
    e = wp.lerp(values[c[0], c[1] + 1, c[2] + 1], values[c[0] + 1, c[1] + 1, c[2] + 1], f[0])
    return wp.lerp(wp.lerp(a, b, f[1]), wp.lerp(d, e, f[1]), f[2])


@wp.func
def leaky_penetration(signed_distance: float, leak: float, leak_distance: float):
    """max(0, -phi): penetration depth. Its backward pass leaks a share of the gradient to points
    just outside (within leak_distance, fading with distance), so contacts about to happen still
    pull (Grasp'D's leaky gradient); far points leak nothing, or hundreds of them would outvote
    the few real contacts."""
    return wp.max(-signed_distance, 0.0)


@wp.func_grad(leaky_penetration)
def adj_leaky_penetration(signed_distance: float, leak: float, leak_distance: float, adj_ret: float):
    if signed_distance < 0.0:
        wp.adjoint[signed_distance] += -adj_ret
    elif signed_distance < leak_distance:
        wp.adjoint[signed_distance] += -leak * (1.0 - signed_distance / leak_distance) * adj_ret


@wp.kernel
def contact_wrench(
    hand_points: wp.array(dtype=wp.vec3),
    sdf: wp.array3d(dtype=float),
    sdf_gradient: wp.array3d(dtype=wp.vec3),
    sdf_shape: wp.vec3i,
    sdf_origin: wp.vec3,
    sdf_spacing: float,
    com_local: wp.vec3,
    state: wp.array(dtype=float),
    stiffness: float,
    damping: float,
    mu: float,
    friction_eps: float,
    leak: float,
    leak_distance: float,
    skin: float,
    wrench: wp.array(dtype=float),
):
    """Net force and torque (about the COM) that the fixed hand points exert on the object,
    and the sum of squared penetrations. Camera frame; object pose given by R and its COM."""
    tid = wp.tid()
    R = wp.mat33(state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7], state[8])
    x = wp.vec3(state[9], state[10], state[11])
    velocity = wp.vec3(state[12], state[13], state[14])
    angular_velocity = wp.vec3(state[15], state[16], state[17])
    h = hand_points[tid]
    arm = h - x
    # The normal interpolates a baked gradient grid: continuous across cells, unlike the
    # gradient of the trilinear distance, so forces (and the loss) have no jumps at cell faces.
    # (Unpack returned tuples: indexing one drops its adjoint in warp 1.19.)
    cell, fraction, outside = grid_cell(sdf_shape, sdf_origin, sdf_spacing, wp.transpose(R) * arm + com_local)
    # the soft skin takes up the first `skin` metres of penetration without pushing back
    signed_distance = trilinear(sdf, cell, fraction) + outside + skin
    if signed_distance >= leak_distance:
        return  # no force and no leaked gradient: most of the band's points, skipped cheaply
    depth = leaky_penetration(signed_distance, leak, leak_distance)
    normal = R * wp.normalize(trilinear(sdf_gradient, cell, fraction))  # outward normal
    contact_velocity = velocity + wp.cross(angular_velocity, arm)
    rate = wp.dot(contact_velocity, normal)  # d(depth)/dt
    magnitude = stiffness * depth * wp.max(1.0 + damping * rate, 0.0)
    tangential = contact_velocity - rate * normal
    friction = -mu * magnitude * tangential / wp.sqrt(wp.dot(tangential, tangential) + friction_eps * friction_eps)
    f = -magnitude * normal + friction
    moment = wp.cross(arm, f)
    for axis in range(3):
        wp.atomic_add(wrench, axis, f[axis])
        wp.atomic_add(wrench, 3 + axis, moment[axis])
    wp.atomic_add(wrench, 6, depth * depth)


# --- torch bridge ----------------------------------------------------------------------------
class StepBuffers:
    """Warp arrays of one rollout step, reused across calls (allocation dominated the cost).
    state = R (9, row-major), COM (3), v (3), w (3); wrench = force (3), torque (3), sum d^2."""

    def __init__(self, device: str) -> None:
        self.state = wp.zeros(18, dtype=float, device=device, requires_grad=True)
        self.wrench = wp.zeros(7, dtype=float, device=device, requires_grad=True)
        self.tape: wp.Tape | None = None


class ContactWrench(torch.autograd.Function):
    """Step k: (R (3,3), COM (3,), v (3,), w (3,)) -> force (3,), torque (3,), sum of squared
    penetrations (); backward through the Warp kernel's adjoint."""

    @staticmethod
    def forward(ctx, model: HandContactModel, step: int, rotation, com, velocity, angular_velocity):
        buffers = model.buffers(step)
        state = torch.cat([rotation.reshape(9), com, velocity, angular_velocity])
        buffers.state.assign(state.detach().to("cpu", torch.float32).numpy())
        buffers.wrench.zero_()
        if any(ctx.needs_input_grad):  # a forward-only evaluation (a candidate step) needs no tape
            buffers.tape = wp.Tape()
            with buffers.tape:
                model.launch(buffers.state, buffers.wrench)
        else:
            buffers.tape = None
            model.launch(buffers.state, buffers.wrench)
        ctx.buffers, ctx.like = buffers, rotation
        wrench = torch.as_tensor(buffers.wrench.numpy(), dtype=rotation.dtype, device=rotation.device)
        return wrench[:3], wrench[3:6], wrench[6]

    @staticmethod
    def backward(ctx, grad_force, grad_torque, grad_energy):
        buffers, like = ctx.buffers, ctx.like
        grad = torch.cat([grad_force, grad_torque, grad_energy.reshape(1)])
        buffers.state.grad.zero_()
        buffers.tape.backward(
            grads={
                buffers.wrench: wp.array(
                    grad.detach().to("cpu", torch.float32).numpy(), dtype=float, device=buffers.wrench.device
                )
            }
        )
        state_grad = torch.as_tensor(buffers.state.grad.numpy(), dtype=like.dtype, device=like.device)
        buffers.tape = None
        return (None, None, state_grad[:9].reshape(3, 3), state_grad[9:12], state_grad[12:15], state_grad[15:18])
