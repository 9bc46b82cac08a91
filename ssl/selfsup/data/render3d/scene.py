"""The scene of the procedural renders: fixed camera and lights, and the shape classes.

Each shape class is a union (and, for the mug, a difference) of a few primitives whose sizes and
counts are drawn per object; objects are normalised like ShapeNet (bounding-box diagonal 1,
centred). Latents follow 3DIEBench exactly (see :func:`sample_latents`).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np

from ...errors import DataError

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
