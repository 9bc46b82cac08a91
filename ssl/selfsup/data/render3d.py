"""A procedural stand-in for 3DIEBench: simple 3D shapes rendered under known rotations and lights.

The real 3DIEBench (ShapeNet renders, about 17 GB) is too big for tests and CPU demos. This module
renders a small dataset with the same on-disk layout and the same 7 latents, so every reader,
method and evaluation written for 3DIEBench runs on it unchanged::

    <out>/<class>/<object>/image_k.jpg    # square RGB JPEG
    <out>/<class>/<object>/latent_k.npy   # 7 float64 latents, 3DIEBench order and ranges
    <out>/train_images.npy, val_images.npy, train_labels.npy, val_labels.npy
    <out>/render3d.json                   # the parameters (the cache key)

Latents (index: meaning, distribution), exactly as 3DIEBench:
0-2 rot_x, rot_y, rot_z: extrinsic "xyz" Euler angles, U(-pi/2, pi/2); the object's world pose is
``Rotation.from_euler("xyz", latent[:3])`` applied to its canonical pose.
3 floor_hue U(0, 1): floor albedo HSV(h, 0.6, 0.6).
4 spot_theta U(0, pi/4), 5 spot_phi U(0, 2 pi): spotlight position at radius 4 (polar angle from
the vertical, azimuth), pointing at the object.
6 spot_hue U(0, 1): light colour HSV(h, 1, 0.8).

Rendering is sphere tracing of signed distance functions (SDFs), vectorised with numpy over every
pixel of every view of one object at once, so the per-operation overhead of numpy is paid once per
object rather than once per image. Each shape class is a union (and, for the mug, a difference) of
a few primitives whose sizes and counts are drawn per object; objects are normalised like ShapeNet
(bounding-box diagonal 1, centred). Shading is Lambertian: a white hemisphere ambient term plus a
coloured spotlight with a soft cone and soft shadows, on an infinite floor. The camera is fixed, as
in 3DIEBench: perspective, distance 2.5, elevation pi/4 (field of view 30 degrees).
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

FORMAT_VERSION = 1
MANIFEST = "render3d.json"
NUM_LATENTS = 7

# Scene constants (world frame: z up). The object fits in a sphere of radius 0.5 about the origin
# (bounding-box diagonal 1, as ShapeNet normalises), so it never touches the floor under any rotation.
CAM_DIST = 2.5
CAM_ELEV = math.pi / 4
CAM_AZIM = -math.pi / 2  # camera on the -y side, looking along +y and down
FOV = math.radians(30.0)  # a bit narrower than Blender's 39.6 deg default: objects cover more pixels
OBJ_RADIUS = 0.5
FLOOR_Z = -0.52
LIGHT_DIST = 4.0
SPOT_INNER = math.radians(12.0)  # full intensity inside this cone half-angle ...
SPOT_OUTER = math.radians(26.0)  # ... falling to zero here; the far floor stays ambient-lit only
AMBIENT = 0.5  # white ambient; the floor far from the spot shows its pure hue at this brightness
SPOT_GAIN = 0.9
SHADOW_SOFTNESS = 12.0
MAX_STEPS = 64


# ---------------------------------------------------------------------------------------------
# Shapes: primitives combined into objects


@dataclass
class Part:
    """One primitive in the object's local frame.

    ``kind`` selects the distance function, ``p`` holds its sizes. The point is mapped into the
    part's frame by optional mirroring (``|x|``, ``|y|``: four table legs cost one evaluation),
    translation by ``center`` and rotation by ``rot`` (columns = the part's axes). ``op`` is how
    the part combines with the parts before it; ``clip`` intersects it with half-spaces
    ``n . q <= c`` (q in the part's frame).
    """

    kind: str
    p: tuple[float, ...]
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rot: np.ndarray | None = None
    mirror: tuple[bool, bool] = (False, False)
    op: str = "union"  # union | subtract
    clip: list[tuple[tuple[float, float, float], float]] = field(default_factory=list)

    def half_extent(self) -> np.ndarray:
        """Half extents of an axis-aligned box around the part in its own frame."""
        k, p = self.kind, self.p
        if k in ("box", "ellipsoid"):
            return np.array(p[:3])
        if k == "cylinder":
            return np.array([p[0], p[0], p[1]])
        if k == "cone":
            r = max(p[0], p[1])
            return np.array([r, r, p[2]])
        if k == "torus":
            return np.array([p[0] + p[1], p[0] + p[1], p[1]])
        if k == "capsule":
            return np.array([p[1], p[1], p[0] + p[1]])
        if k == "pyramid":
            return np.array([p[1], p[1], p[2]])
        raise ValueError(k)


@dataclass
class Shape:
    """An object: its class name, parts, albedo (linear RGB in [0, 1]) and normalisation.

    Evaluate with :func:`shape_sdf`; ``scale`` and ``offset`` map the normalised object space
    (bounding-box diagonal 1, centred) to the parts' units.
    """

    name: str
    parts: list[Part]
    colour: np.ndarray
    scale: float = 1.0
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def normalise(self) -> Shape:
        """Centre the bounding box at the origin and scale its diagonal to 1 (ShapeNet's convention)."""
        lo = np.full(3, np.inf)
        hi = np.full(3, -np.inf)
        for part in self.parts:
            if part.op == "subtract":
                continue
            h = part.half_extent()
            if part.rot is not None:
                h = np.abs(part.rot) @ h
            c = np.array(part.center, dtype=float)
            plo, phi = c - h, c + h
            for ax in (0, 1):
                if part.mirror[ax]:
                    m = abs(c[ax]) + h[ax]
                    plo[ax], phi[ax] = -m, m
            lo, hi = np.minimum(lo, plo), np.maximum(hi, phi)
        self.offset = (lo + hi) / 2
        self.scale = 2 * OBJ_RADIUS / float(np.linalg.norm(hi - lo))
        return self


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=float)


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=float)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# Each builder draws one object's parts in a canonical pose (z up); sizes, proportions and part
# counts vary per object so that no single size or colour statistic identifies the class.


def _box(rng):
    b = rng.uniform(0.3, 1.0, 3)
    return [Part("box", (*b, _u(rng, 0.0, 0.2) * b.min()))]


def _ellipsoid(rng):
    r = rng.uniform(0.45, 1.0, 3)
    return [Part("ellipsoid", tuple(r))]


def _cylinder(rng):
    r, h = _u(rng, 0.3, 0.9), _u(rng, 0.3, 1.0)
    return [Part("cylinder", (r, h, _u(rng, 0.0, 0.15) * min(r, h)))]


def _cone(rng):
    r1, h = _u(rng, 0.4, 0.9), _u(rng, 0.5, 1.1)
    return [Part("cone", (r1, r1 * _u(rng, 0.0, 0.35), h))]


def _torus(rng):
    big = _u(rng, 0.6, 1.0)
    return [Part("torus", (big, big * _u(rng, 0.15, 0.45)))]


def _capsule(rng):
    return [Part("capsule", (_u(rng, 0.25, 0.9), _u(rng, 0.2, 0.5)))]


def _table(rng):
    height, t = _u(rng, 0.6, 1.1), _u(rng, 0.04, 0.1)
    w = _u(rng, 0.5, 0.9)
    d = w * _u(rng, 0.5, 1.0)
    round_top = rng.random() < 0.35
    top = (
        Part("cylinder", (w, t, 0.0), center=(0, 0, height))
        if round_top
        else Part("box", (w, d, t, 0.0), center=(0, 0, height))
    )
    if rng.random() < 0.3:  # pedestal table: one column and a foot
        col = _u(rng, 0.06, 0.14)
        return [
            top,
            Part("cylinder", (col, height / 2, 0.0), center=(0, 0, height / 2)),
            Part("cylinder", (w * _u(rng, 0.3, 0.6), t, 0.0), center=(0, 0, t)),
        ]
    leg = _u(rng, 0.05, 0.1)
    inset = leg + _u(rng, 0.0, 0.12)
    lx, ly = (w - inset, d - inset) if not round_top else ((w - inset) * 0.7, (w - inset) * 0.7)
    return [top, Part("box", (leg, leg, height / 2, 0.0), center=(lx, ly, height / 2), mirror=(True, True))]


def _chair(rng):
    seat_h, w, t = _u(rng, 0.4, 0.65), _u(rng, 0.35, 0.55), _u(rng, 0.03, 0.07)
    d = w * _u(rng, 0.8, 1.2)
    leg = _u(rng, 0.035, 0.07)
    back_h = _u(rng, 0.35, 0.8)
    tilt = _u(rng, 0.0, 0.3)
    back_c = (0.0, -d + t + math.sin(tilt) * back_h / 2, seat_h + t + math.cos(tilt) * back_h / 2)
    parts = [
        Part("box", (w, d, t, 0.0), center=(0, 0, seat_h)),
        Part("box", (leg, leg, seat_h / 2, 0.0), center=(w - leg, d - leg, seat_h / 2), mirror=(True, True)),
        Part("box", (w, t, back_h / 2, 0.0), center=back_c, rot=_rot_x(-tilt)),
    ]
    if rng.random() < 0.4:  # armrests
        arm_h = _u(rng, 0.15, 0.3)
        parts.append(
            Part("box", (t, d * 0.8, t, 0.0), center=(w - t, 0, seat_h + arm_h), mirror=(True, False))
        )
        parts.append(
            Part(
                "box",
                (t, t, arm_h / 2, 0.0),
                center=(w - t, d * 0.6, seat_h + arm_h / 2),
                mirror=(True, False),
            )
        )
    return parts


def _mug(rng):
    r, h = _u(rng, 0.35, 0.6), _u(rng, 0.35, 0.8)
    wall = _u(rng, 0.04, 0.09)
    handle_r = h * _u(rng, 0.45, 0.75)
    handle_t = _u(rng, 0.03, 0.07)
    return [
        Part("cylinder", (r, h, 0.0)),
        Part("cylinder", (r - wall, h, 0.0), center=(0, 0, wall), op="subtract"),
        # A torus in the xz plane on the +x side, cut so that only the outer half shows.
        Part(
            "torus",
            (handle_r, handle_t),
            center=(r, 0, 0),
            rot=_rot_x(math.pi / 2),
            clip=[((-1.0, 0.0, 0.0), -0.5 * wall)],
        ),
    ]


def _pyramid(rng):
    n = int(rng.integers(3, 7))  # 3 to 6 base sides
    a, h = _u(rng, 0.6, 1.0), _u(rng, 0.35, 0.8)
    parts = [Part("pyramid", (n, a, h))]
    if rng.random() < 0.3:  # truncated
        parts[0].clip = [((0.0, 0.0, 1.0), h * _u(rng, 0.2, 0.6))]
    return parts


def _cross(rng):
    length = _u(rng, 0.7, 1.0)
    t = _u(rng, 0.08, 0.2)
    arm = length * _u(rng, 0.45, 0.9)
    lift = length * _u(rng, 0.0, 0.45)
    parts = [
        Part("box", (t, t, length, 0.0)),
        Part("box", (arm, t, t, 0.0), center=(0, 0, lift)),
    ]
    if rng.random() < 0.4:  # a 3D jack rather than a flat cross
        parts.append(Part("box", (t, arm, t, 0.0), center=(0, 0, lift)))
    return parts


def _lshape(rng):
    a, b = _u(rng, 0.6, 1.0), _u(rng, 0.4, 0.9)
    t, depth = _u(rng, 0.12, 0.3), _u(rng, 0.15, 0.5)
    return [
        Part("box", (t, depth, a, 0.0), center=(-b + t, 0, 0)),
        Part("box", (b, depth, t, 0.0), center=(0, 0, -a + t)),
    ]


def _dumbbell(rng):
    length, bar = _u(rng, 0.5, 0.9), _u(rng, 0.05, 0.14)
    end = _u(rng, 0.18, 0.4)
    end_part = (
        Part("ellipsoid", (end, end, end), center=(length, 0, 0), mirror=(True, False))
        if rng.random() < 0.5
        else Part(
            "cylinder",
            (end, end * 0.6, 0.0),
            center=(length, 0, 0),
            rot=_rot_y(math.pi / 2),
            mirror=(True, False),
        )
    )
    return [Part("cylinder", (bar, length, 0.0), rot=_rot_y(math.pi / 2)), end_part]


# Class order matters only for which classes ``num_classes`` keeps (the first n); labels are the
# index of the class folder name in sorted order, as in 3DIEBench.
SHAPES = {
    "box": _box,
    "ellipsoid": _ellipsoid,
    "cylinder": _cylinder,
    "cone": _cone,
    "torus": _torus,
    "table": _table,
    "chair": _chair,
    "mug": _mug,
    "pyramid": _pyramid,
    "cross": _cross,
    "capsule": _capsule,
    "lshape": _lshape,
    "dumbbell": _dumbbell,
}
CLASSES = list(SHAPES)


def sample_shape(name: str, rng: np.random.Generator) -> Shape:
    """Draw one object of class ``name``: parts with random proportions, and a random colour.

    The colour distribution is the same for every class, so colour says nothing about the class.
    """
    if name not in SHAPES:
        raise DataError(f"unknown render3d shape class '{name}'; choose one of {', '.join(CLASSES)}")
    parts = SHAPES[name](rng)
    colour = np.array(colorsys.hsv_to_rgb(_u(rng, 0, 1), _u(rng, 0.2, 0.85), _u(rng, 0.5, 0.9)))
    return Shape(name, parts, colour).normalise()


def sample_latents(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw ``n`` latent vectors [n, 7] (float64) from 3DIEBench's distributions."""
    lat = np.empty((n, NUM_LATENTS), dtype=np.float64)
    lat[:, 0:3] = rng.uniform(-math.pi / 2, math.pi / 2, (n, 3))
    lat[:, 3] = rng.uniform(0, 1, n)
    lat[:, 4] = rng.uniform(0, math.pi / 4, n)
    lat[:, 5] = rng.uniform(0, 2 * math.pi, n)
    lat[:, 6] = rng.uniform(0, 1, n)
    return lat


# ---------------------------------------------------------------------------------------------
# Signed distance functions. Points are three float32 arrays (x, y, z) so every operation runs on
# contiguous memory. Where an exact distance is awkward (cone, pyramid, intersections), a lower
# bound is used: sphere tracing stays correct, it only needs a few more steps near edges.


def _length(*cs):
    s = cs[0] * cs[0]
    for c in cs[1:]:
        s = s + c * c
    return np.sqrt(s)


def _sd_box(x, y, z, bx, by, bz, r):
    qx, qy, qz = np.abs(x) - (bx - r), np.abs(y) - (by - r), np.abs(z) - (bz - r)
    outside = _length(np.maximum(qx, 0), np.maximum(qy, 0), np.maximum(qz, 0))
    inside = np.minimum(np.maximum(np.maximum(qx, qy), qz), 0)
    return outside + inside - r


def _sd_ellipsoid(x, y, z, rx, ry, rz):
    # A close approximation of the ellipsoid distance, accurate near the surface where it matters.
    k0 = _length(x / rx, y / ry, z / rz)
    k1 = _length(x / (rx * rx), y / (ry * ry), z / (rz * rz))
    return k0 * (k0 - 1) / np.maximum(k1, 1e-6)


def _sd_cylinder(x, y, z, r, h, e):
    dx = _length(x, y) - (r - e)
    dz = np.abs(z) - (h - e)
    return np.minimum(np.maximum(dx, dz), 0) + _length(np.maximum(dx, 0), np.maximum(dz, 0)) - e


def _sd_cone(x, y, z, r1, r2, h):
    # Solid of revolution of a trapezoid: bottom radius r1 at z=-h, top radius r2 at z=+h. The
    # side is the half-plane through (r1, -h) and (r2, h) in the (radius, z) meridian plane.
    rho = _length(x, y)
    nx, nz = 2 * h, r1 - r2
    norm = math.hypot(nx, nz)
    side = (nx * (rho - r1) + nz * (z + h)) / norm
    return np.maximum(side, np.abs(z) - h)


def _sd_torus(x, y, z, big, small):
    return _length(_length(x, y) - big, z) - small


def _sd_capsule(x, y, z, h, r):
    return _length(x, y, z - np.clip(z, -h, h)) - r


def _sd_pyramid(x, y, z, n, a, h):
    # Convex polytope: n slanted faces through the base edges and the apex, plus the base; the
    # maximum of the face-plane distances bounds the true distance from below.
    n = int(n)
    apothem = a * math.cos(math.pi / n)
    slope = math.hypot(2 * h, apothem)
    cz, cr = apothem / slope, 2 * h / slope  # face normal: cr in the radial direction, cz up
    d = -z - h
    for k in range(n):
        ang = (2 * k + 1) * math.pi / n
        face = cr * (math.cos(ang) * x + math.sin(ang) * y) + cz * (z - h)
        d = np.maximum(d, face)
    return d


_SDF = {
    "box": _sd_box,
    "ellipsoid": _sd_ellipsoid,
    "cylinder": _sd_cylinder,
    "cone": _sd_cone,
    "torus": _sd_torus,
    "capsule": _sd_capsule,
    "pyramid": _sd_pyramid,
}


def _part_sdf(part: Part, x, y, z):
    cx, cy, cz = part.center
    x = np.abs(x) - abs(cx) if part.mirror[0] else x - cx
    y = np.abs(y) - abs(cy) if part.mirror[1] else y - cy
    z = z - cz
    if part.rot is not None:
        m = part.rot  # columns are the part's axes: local = m^T @ world
        x, y, z = (
            m[0, 0] * x + m[1, 0] * y + m[2, 0] * z,
            m[0, 1] * x + m[1, 1] * y + m[2, 1] * z,
            m[0, 2] * x + m[1, 2] * y + m[2, 2] * z,
        )
    d = _SDF[part.kind](x, y, z, *part.p)
    for (nx, ny, nz), c in part.clip:
        d = np.maximum(d, nx * x + ny * y + nz * z - c)
    return d


def shape_sdf(shape: Shape, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Signed distance (a lower bound where exact is awkward) of normalised-space points to the object."""
    s = 1.0 / shape.scale
    ox, oy, oz = shape.offset
    x, y, z = x * s + ox, y * s + oy, z * s + oz
    d = None
    for part in shape.parts:
        dp = _part_sdf(part, x, y, z)
        if d is None:
            d = dp
        elif part.op == "subtract":
            d = np.maximum(d, -dp)
        else:
            d = np.minimum(d, dp)
    return d * shape.scale


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


# ---------------------------------------------------------------------------------------------
# Dataset writer


def _object_seed(seed: int, class_name: str, obj: int) -> np.random.SeedSequence:
    # Keyed by class *name* and object index: an object's shape, colour and views do not depend
    # on the worker count, the render order or how many classes were asked for.
    return np.random.SeedSequence([seed, zlib.crc32(class_name.encode()), obj])


def object_name(obj: int) -> str:
    """Folder name of object number ``obj`` within its class."""
    return f"obj{obj:04d}"


def _render_object(task: tuple[str, str, int, int, int, int]) -> int:
    """Render and write every view of one object (a process-pool task); returns the image count."""
    from PIL import Image

    root, class_name, obj, views, size, seed = task
    rng = np.random.default_rng(_object_seed(seed, class_name, obj))
    shape = sample_shape(class_name, rng)
    latents = sample_latents(rng, views)
    images = render_views(shape, latents, size)
    folder = Path(root) / class_name / object_name(obj)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(views):
        # Quality 95 without chroma subsampling: at 32-64 px, 4:2:0 subsampling would smear the
        # floor and light hues that the colour latents are meant to be recoverable from.
        Image.fromarray(images[k]).save(folder / f"image_{k}.jpg", quality=95, subsampling=0)
        np.save(folder / f"latent_{k}.npy", latents[k])
    return views


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _existing_is_complete(out: Path, params: dict[str, Any]) -> bool:
    """True if ``out`` already holds this exact dataset; raises DataError if it holds anything else."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise DataError(f"'{out}' exists and is not a folder; pick another output folder")
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            found = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            raise DataError(f"'{manifest}' is unreadable; delete '{out}' and render again") from None
        if {k: found.get(k) for k in params} == params:
            return True
        diff = ", ".join(f"{k}={found.get(k)} (asked {v})" for k, v in params.items() if found.get(k) != v)
        raise DataError(
            f"'{out}' already holds a render3d dataset with other parameters: {diff}; "
            "pick another output folder or delete this one"
        )
    if any(out.iterdir()):
        raise DataError(
            f"'{out}' exists and is not a render3d dataset; pick another output folder or delete it"
        )
    return False


def render_dataset(
    out: str | Path,
    num_classes: int = 10,
    objects_per_class: int = 20,
    views_per_object: int = 10,
    size: int = 64,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Render a 3DIEBench-layout dataset into ``out``; a no-op if ``out`` already holds it.

    Classes are the first ``num_classes`` of :data:`CLASSES`; each object gets its own shape
    parameters, colour and ``views_per_object`` random latents, all determined by ``seed``
    (results do not depend on ``workers``). The split files hold a fixed 80/20 per-class object
    split. Everything is written to a hidden sibling folder that is renamed onto ``out`` at the
    end, so an interrupted render leaves no partial dataset.

    Returns ``{"images", "seconds", "images_per_s", "cached", "path"}``; ``cached`` is True (and
    nothing is rendered) when ``out`` already holds a dataset with these parameters. Raises
    :class:`DataError` if ``out`` holds anything else.
    """
    from .iebench import object_split

    out = Path(out)
    if not 1 <= num_classes <= len(CLASSES):
        raise DataError(f"render3d: num_classes must be between 1 and {len(CLASSES)}, got {num_classes}")
    if objects_per_class < 2:
        raise DataError(
            f"render3d: objects_per_class must be at least 2 (train and val), got {objects_per_class}"
        )
    if views_per_object < 1:
        raise DataError(f"render3d: views_per_object must be at least 1, got {views_per_object}")
    if not 16 <= size <= 512:
        raise DataError(f"render3d: size must be between 16 and 512 pixels, got {size}")
    params = {
        "format": "render3d",
        "version": FORMAT_VERSION,
        "num_classes": int(num_classes),
        "objects_per_class": int(objects_per_class),
        "views_per_object": int(views_per_object),
        "size": int(size),
        "seed": int(seed),
    }
    n_images = num_classes * objects_per_class * views_per_object
    if _existing_is_complete(out, params):
        return {"images": n_images, "seconds": 0.0, "images_per_s": 0.0, "cached": True, "path": str(out)}

    out.parent.mkdir(parents=True, exist_ok=True)
    # Leftovers of killed renders into the same folder: remove those whose process is gone.
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    classes = CLASSES[:num_classes]
    tasks = [
        (str(tmp), c, o, views_per_object, size, seed) for c in classes for o in range(objects_per_class)
    ]
    start = time.perf_counter()
    bar = None
    try:
        tmp.mkdir()
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n_images, desc=f"render3d {out.name}", unit="img", leave=False, mininterval=1.0)
        if workers > 1:
            import multiprocessing as mp

            import scipy.spatial.transform  # noqa: F401  (imported once here, inherited by forked workers)

            # fork on Linux (as torch's DataLoader does): spawn would re-import the caller's main
            # module, which breaks scripts without an `if __name__ == "__main__"` guard. Children
            # only run numpy and PIL, so threads the parent may hold (torch, tqdm) are not touched.
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            with mp.get_context(method).Pool(min(workers, len(tasks))) as pool:
                for n in pool.imap_unordered(_render_object, tasks, chunksize=4):
                    if bar is not None:
                        bar.update(n)
        else:
            for task in tasks:
                n = _render_object(task)
                if bar is not None:
                    bar.update(n)
        seconds = time.perf_counter() - start

        objects = {c: [object_name(o) for o in range(objects_per_class)] for c in classes}
        split = object_split(objects)
        for name, arr in split.items():
            np.save(tmp / f"{name}.npy", arr)
        manifest = dict(params, classes=sorted(classes), images=n_images)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        # Publish: the rename is atomic. Another process may have published the same dataset in
        # the meantime (two trainers starting together); then keep theirs.
        try:
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            os.rename(tmp, out)
        except OSError:
            if not _existing_is_complete(out, params):
                raise
            return {"images": n_images, "seconds": 0.0, "images_per_s": 0.0, "cached": True, "path": str(out)}
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "images": n_images,
        "seconds": seconds,
        "images_per_s": n_images / max(seconds, 1e-9),
        "cached": False,
        "path": str(out),
    }


def save_sample_grid(root: str | Path, path: str | Path, views: int = 8, cell: int = 64) -> Path:
    """Save a PNG grid of a rendered dataset: one row per class (its first object), one column per view.

    Each row is labelled with the class name. Images are resized to ``cell`` pixels. The PNG is
    palette-quantised to stay small enough to commit.
    """
    from PIL import Image, ImageDraw

    from .iebench import IEBenchIndex

    index = IEBenchIndex(root, "train")
    label_w = 72
    rows = []
    for c, name in enumerate(index.classes):
        objs = np.nonzero(index.labels == c)[0]
        if len(objs) == 0:
            continue
        i = int(objs[0])
        nv = min(views, index.num_views)
        rows.append((name, [index.load_image(i, v, cell) for v in range(nv)]))
    if not rows:
        raise DataError(f"'{root}' has no training objects to draw")
    ncols = max(len(r[1]) for r in rows)
    canvas = Image.new("RGB", (label_w + ncols * cell, len(rows) * cell), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (name, imgs) in enumerate(rows):
        draw.text((4, r * cell + cell // 2 - 6), name, fill=(0, 0, 0))
        for k, img in enumerate(imgs):
            canvas.paste(Image.fromarray(img), (label_w + k * cell, r * cell))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True
    )
    return path
