"""Calling ``libffcv``'s resize (OpenCV ``INTER_AREA``) from cached numba code.

FFCV calls its C functions through ctypes objects, which numba compiles into the code as fixed
addresses: such a function cannot be cached on disk (numba: "uses dynamic globals"), so every
kernel calling it would be compiled again at each start (about 25 s for the multi-view kernel).
Here the address is an ordinary ``int64`` argument and :func:`call_resize` emits the call through
it, so the kernels are cached like the others.
"""

from __future__ import annotations

import ctypes

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


def resize_address() -> int:
    """The address of ``libffcv``'s ``resize`` (needs ffcv)."""
    from ffcv.libffcv import ctypes_resize

    return int(ctypes.cast(ctypes_resize, ctypes.c_void_p).value)


@intrinsic
def _call_void_i64x11(typingctx, fn, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10):
    """``((void (*)(int64 x 11)) fn)(a0, ..., a10)``."""
    sig = types.void(types.int64, *([types.int64] * 11))

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(64)] * 11)
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), args[1:])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def call_resize(fn, src, top, left, h, w, dst):
    """``src[top:top+h, left:left+w]`` (HWC uint8, C-contiguous) resized into ``dst`` (HWC uint8).

    ``libffcv``'s ``resize(0, src, rows, cols, r0, r1, c0, c1, dst, rows, cols)``: OpenCV
    ``cv::resize`` with ``INTER_AREA``, as FFCV's ``RandomResizedCropRGBImageDecoder`` does.
    """
    _call_void_i64x11(
        fn, 0, src.ctypes.data, src.shape[0], src.shape[1], top, top + h, left, left + w,
        dst.ctypes.data, dst.shape[0], dst.shape[1],
    )  # fmt: skip
