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

Modules: :mod:`.scene` (camera, lights, shape classes, latents), :mod:`.sdf` (distance
functions), :mod:`.raycast` (tracing and shading), :mod:`.writer` (the dataset writer).
"""

from .raycast import render_view, render_views
from .scene import AMBIENT, CLASSES, NUM_LATENTS, sample_latents, sample_shape
from .writer import FORMAT_VERSION, MANIFEST, object_name, render_dataset, save_sample_grid

__all__ = [
    "AMBIENT",
    "CLASSES",
    "FORMAT_VERSION",
    "MANIFEST",
    "NUM_LATENTS",
    "object_name",
    "render_dataset",
    "render_view",
    "render_views",
    "sample_latents",
    "sample_shape",
    "save_sample_grid",
]
