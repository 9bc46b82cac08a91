"""Camera, sphere tracing, soft shadows and Lambertian shading: objects and latents -> images.

Rendering is vectorised with numpy over every pixel of every view of one object at once, so the
per-operation overhead of numpy is paid once per object rather than once per image. Shading is a
white hemisphere ambient term plus a coloured spotlight with a soft cone and soft shadows, on an
infinite floor; the camera is fixed, as in 3DIEBench.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .scene import (
    AMBIENT,
    CAM_AZIM,
    CAM_DIST,
    CAM_ELEV,
    FLOOR_Z,
    FOV,
    LIGHT_DIST,
    MAX_STEPS,
    OBJ_RADIUS,
    SHADOW_SOFTNESS,
    SPOT_GAIN,
    SPOT_INNER,
    SPOT_OUTER,
    Shape,
)
from .sdf import shape_sdf

# ---------------------------------------------------------------------------------------------
# Camera, tracing and shading


@dataclass
class _Camera:
    origin: np.ndarray  # (3,)
    dirs: np.ndarray  # [P, 3] unit ray directions, row-major pixels
    t_floor: np.ndarray  # [P] ray parameter where each ray meets the floor
    sphere: np.ndarray  # indices of pixels whose ray meets the object's bounding sphere
    t_in: np.ndarray  # entry / exit parameters for those rays
    t_out: np.ndarray


_CAMERAS: dict[int, _Camera] = {}


def _camera(size: int) -> _Camera:
    """Pixel rays of the fixed camera (cached per size: every view shares them)."""
    if size in _CAMERAS:
        return _CAMERAS[size]
    c = CAM_DIST * np.array(
        [math.cos(CAM_ELEV) * math.cos(CAM_AZIM), math.cos(CAM_ELEV) * math.sin(CAM_AZIM), math.sin(CAM_ELEV)]
    )
    fwd = -c / np.linalg.norm(c)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    half = math.tan(FOV / 2)
    s = (np.arange(size) + 0.5) / size * 2 - 1
    u = s[None, :] * half  # columns: left to right
    v = -s[:, None] * half  # rows: top to bottom
    d = fwd + u[..., None] * right + v[..., None] * up
    d = (d / np.linalg.norm(d, axis=-1, keepdims=True)).reshape(-1, 3)
    t_floor = (FLOOR_Z - c[2]) / d[:, 2]  # every ray points down (the top edge is 25 deg below horizontal)
    # Bounding sphere |c + t d| = R: t^2 + 2 b t + (|c|^2 - R^2) = 0. The sphere is rotation
    # invariant, so which pixels can see the object is the same for every view.
    b = d @ c
    disc = b * b - (c @ c - (OBJ_RADIUS * 1.01) ** 2)
    sph = np.nonzero(disc > 0)[0]
    root = np.sqrt(disc[sph])
    cam = _Camera(c, d, t_floor, sph, -b[sph] - root, -b[sph] + root)
    _CAMERAS[size] = cam
    return cam


def _sphere_exit(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Ray parameter where rays starting inside (or near) the bounding sphere leave it; -1 if they miss."""
    b = (o * d).sum(1)
    disc = b * b - ((o * o).sum(1) - (OBJ_RADIUS * 1.01) ** 2)
    return np.where(disc > 0, -b + np.sqrt(np.maximum(disc, 0)), -1.0)


def _trace(shape: Shape, o: np.ndarray, d: np.ndarray, t0: np.ndarray, t1: np.ndarray, eps: float):
    """Sphere-trace rays o + t d (object space) from t0 to t1.

    Returns (hit mask, t at hit). Finished rays are dropped from the working set at every step, so
    the cost follows the number of ray steps rather than rays times the slowest ray. ``eps`` is
    the hit threshold per unit distance (a fraction of the pixel footprint).
    """
    n = len(t0)
    hit = np.zeros(n, dtype=bool)
    t_hit = np.zeros(n, dtype=np.float32)
    idx = np.arange(n)
    ox, oy, oz = (o[:, k].astype(np.float32) for k in range(3))
    dx, dy, dz = (d[:, k].astype(np.float32) for k in range(3))
    t, t_end = t0.astype(np.float32), t1.astype(np.float32)
    dist = None
    for _ in range(MAX_STEPS):
        if len(idx) == 0:
            break
        dist = shape_sdf(shape, ox + t * dx, oy + t * dy, oz + t * dz)
        is_hit = dist < eps * t
        hit[idx[is_hit]] = True
        t_hit[idx[is_hit]] = t[is_hit]
        t = t + dist
        keep = ~is_hit & (t < t_end)
        if not keep.all():
            idx, t, t_end, dist = idx[keep], t[keep], t_end[keep], dist[keep]
            ox, oy, oz, dx, dy, dz = ox[keep], oy[keep], oz[keep], dx[keep], dy[keep], dz[keep]
    if len(idx) and dist is not None:
        # Out of steps: these rays graze a silhouette; call them hits if they got close.
        close = dist < 4 * eps * t
        hit[idx[close]] = True
        t_hit[idx[close]] = t[close]
    return hit, t_hit


def _soft_shadow(shape: Shape, o: np.ndarray, d: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """Fraction of the light reaching each ray's origin (0 = full shadow), by the classic penumbra
    estimate min(k * distance / t) along the shadow ray."""
    n = len(t0)
    light = np.ones(n, dtype=np.float32)
    idx = np.arange(n)
    ox, oy, oz = (o[:, k].astype(np.float32) for k in range(3))
    dx, dy, dz = (d[:, k].astype(np.float32) for k in range(3))
    t, t_end = t0.astype(np.float32), t1.astype(np.float32)
    for _ in range(MAX_STEPS // 2):
        if len(idx) == 0:
            break
        dist = shape_sdf(shape, ox + t * dx, oy + t * dy, oz + t * dz)
        light[idx] = np.minimum(light[idx], np.clip(SHADOW_SOFTNESS * dist / np.maximum(t, 1e-3), 0, 1))
        t = t + np.maximum(dist, 0.004)
        keep = (dist > 1e-4) & (t < t_end)
        if not keep.all():
            blocked = idx[dist <= 1e-4]
            light[blocked] = 0.0
            idx, t, t_end = idx[keep], t[keep], t_end[keep]
            ox, oy, oz, dx, dy, dz = ox[keep], oy[keep], oz[keep], dx[keep], dy[keep], dz[keep]
    return light


def _normals(shape: Shape, p: np.ndarray, h: float) -> np.ndarray:
    """Unit SDF gradients at points [N, 3] by a 4-point tetrahedral finite difference."""
    n = np.zeros_like(p, dtype=np.float32)
    for k in ((1, -1, -1), (-1, -1, 1), (-1, 1, -1), (1, 1, 1)):
        kk = np.array(k, dtype=np.float32)
        q = p + h * kk
        n += shape_sdf(shape, q[:, 0], q[:, 1], q[:, 2])[:, None] * kk
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _hsv(h: np.ndarray, s: float, v: float) -> np.ndarray:
    """Vectorised HSV -> RGB for an array of hues [N] -> [N, 3]."""
    h = np.mod(h, 1.0) * 6
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h[:, None], 6)
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def light_positions(latents: np.ndarray) -> np.ndarray:
    """World positions [N, 3] of the spotlights of latents [N, 7]."""
    th, ph = latents[:, 4], latents[:, 5]
    return LIGHT_DIST * np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], axis=1)


def _smoothstep(cosang: np.ndarray) -> np.ndarray:
    """Soft spot-cone edge: 1 inside SPOT_INNER, 0 outside SPOT_OUTER (cosine of the off-axis angle)."""
    lo, hi = math.cos(SPOT_OUTER), math.cos(SPOT_INNER)
    s = np.clip((cosang - lo) / (hi - lo), 0, 1)
    return s * s * (3 - 2 * s)


def _to_object(rot: np.ndarray, v: np.ndarray) -> np.ndarray:
    """R^T v for stacks of rotations [N, 3, 3] and vectors [N, 3] (world -> object space)."""
    return (v[:, None, :] @ rot)[:, 0]


def render_views(shape: Shape, latents: np.ndarray, size: int) -> np.ndarray:
    """Render views of one object, one per latent row [V, 7] -> uint8 images [V, size, size, 3]."""
    from scipy.spatial.transform import Rotation

    latents = np.atleast_2d(np.asarray(latents, dtype=np.float64))
    nv = len(latents)
    cam = _camera(size)
    npx = size * size
    f32 = np.float32
    rot = Rotation.from_euler("xyz", latents[:, :3]).as_matrix().astype(f32)  # world = R @ object
    lpos = light_positions(latents).astype(f32)  # [V, 3]
    l_axis = lpos / np.linalg.norm(lpos, axis=1, keepdims=True)  # the spot points at the origin
    lcol = (SPOT_GAIN * _hsv(latents[:, 6], 1.0, 0.8)).astype(f32)  # [V, 3]
    floor_rgb = _hsv(latents[:, 3], 0.6, 0.6).astype(f32)  # [V, 3]
    pix_eps = 0.3 * 2 * math.tan(FOV / 2) / size  # hit threshold per unit distance
    origin = cam.origin.astype(f32)

    # --- primary rays into the bounding sphere, moved into each view's object space (R^T).
    ns = len(cam.sphere)
    dw = cam.dirs[cam.sphere].astype(f32)  # [S, 3] world
    o_obj = origin @ rot  # [V, 3]
    d_obj = dw[None] @ rot  # [V, S, 3]
    hit, t = _trace(
        shape,
        np.repeat(o_obj, ns, axis=0),
        d_obj.reshape(-1, 3),
        np.tile(cam.t_in, nv),
        np.tile(cam.t_out, nv),
        pix_eps,
    )
    hit = hit.reshape(nv, ns)
    obj_mask = np.zeros((nv, npx), dtype=bool)
    obj_mask[:, cam.sphere] = hit

    # --- floor: shaded densely for every pixel of every view (its points are the same in all
    # views), then the object pixels are written over it.
    x_f = (cam.origin + cam.t_floor[:, None] * cam.dirs).astype(f32)  # [P, 3]
    to_l = lpos[:, None, :] - x_f[None]  # [V, P, 3]
    l_dir = to_l / np.linalg.norm(to_l, axis=2, keepdims=True)
    lam = l_dir[..., 2] * _smoothstep((l_dir @ l_axis[:, :, None])[..., 0])  # [V, P]
    # Shadow rays only matter where they pass through the object's bounding sphere.
    b = (l_dir * x_f[None]).sum(-1)
    disc = b * b - ((x_f * x_f).sum(1) - (OBJ_RADIUS * 1.01) ** 2)[None]
    fv, fp = np.nonzero((disc > 0) & (lam > 0) & ~obj_mask)
    if len(fv):
        root = np.sqrt(disc[fv, fp])
        t0, t1 = np.maximum(-b[fv, fp] - root, 0), -b[fv, fp] + root
        rv = rot[fv]
        lam[fv, fp] *= _soft_shadow(shape, _to_object(rv, x_f[fp]), _to_object(rv, l_dir[fv, fp]), t0, t1)
    img = floor_rgb[:, None, :] * (AMBIENT + lam[..., None] * lcol[:, None, :])  # [V, P, 3]

    # --- object pixels
    hv, hs = np.nonzero(hit)
    if len(hv):
        th = t.reshape(nv, ns)[hv, hs]
        p_obj = o_obj[hv] + th[:, None] * d_obj[hv, hs]
        n_obj = _normals(shape, p_obj, 1e-3)
        n_w = (rot[hv] @ n_obj[:, :, None])[..., 0]
        x_w = origin + th[:, None] * dw[hs]
        to_l = lpos[hv] - x_w
        l_dir = to_l / np.linalg.norm(to_l, axis=1, keepdims=True)
        cone = _smoothstep((l_dir * l_axis[hv]).sum(1))
        lam = np.clip((n_w * l_dir).sum(1), 0, 1) * cone
        lit = np.nonzero(lam > 0)[0]
        if len(lit):  # self-shadows: trace towards the light from just above the surface
            start = p_obj[lit] + (2 * pix_eps * th[lit])[:, None] * n_obj[lit]
            l_obj = _to_object(rot[hv[lit]], l_dir[lit])
            lam[lit] *= _soft_shadow(shape, start, l_obj, np.zeros(len(lit)), _sphere_exit(start, l_obj))
        amb = AMBIENT * (0.75 + 0.25 * n_w[:, 2])  # sky-like hemisphere ambient keeps unlit sides readable
        img[hv, cam.sphere[hs]] = shape.colour[None].astype(f32) * (amb[:, None] + lam[:, None] * lcol[hv])

    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out.reshape(nv, size, size, 3)


def render_view(shape_params: Shape, latents: np.ndarray, size: int = 64) -> np.ndarray:
    """Render one view of an object (from :func:`sample_shape`) for latents (7,) -> HWC uint8 RGB."""
    return render_views(shape_params, np.asarray(latents, dtype=np.float64)[None], size)[0]
