"""Signed distance functions of the shape primitives and of whole objects (sphere tracing input)."""

from __future__ import annotations

import math

import numpy as np

from .scene import Part, Shape

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
