"""Convolution, pooling and batch normalisation, differentiable to any order.

Everything in ``npjem.autograd.functional`` (relu, gelu, softplus, linear, layer_norm,
dropout, cross_entropy …) is re-exported here, so ``from npjem.nn import functional as F``
reads like PyTorch.

Convolution (NCHW input, weight ``(out, in/groups, kh, kw)``, PyTorch's conventions) is
im2col + one GEMM. Three Functions close under differentiation, so ``create_graph=True``
works to any order (denoising score matching differentiates through ∇ₓE of a ConvNet):

* ``Conv2dFunction``              y  = A_W x               (+ b)
* ``ConvTranspose2dFunction``     gx = A_Wᵀ gy             (the input gradient; conv_transpose2d)
* ``Conv2dWeightGradFunction``    gW = ∂⟨A_W x, gy⟩/∂W     (the weight gradient)

All three are bilinear, and the derivative of each is made of the other two (or of itself):
∂⟨gx', A_Wᵀgy⟩ = ⟨A_W gx', gy⟩, so ConvTranspose's backward is Conv2d in gy and WeightGrad in
W; ⟨ggW, gW(x, gy)⟩ = ⟨A_ggW x, gy⟩, so WeightGrad's backward is ConvTranspose in x and
Conv2d in gy.

Layout, for speed on NumPy: the input is copied (a few images at a time) into a padded
channels-last buffer, whose kh×kw windows (a strided view) are copied into a contiguous
column matrix of rows (n, ho, wo) and columns (group, i, j, c); the weight is reordered to
match once per call. Channels-last windows copy runs of C contiguous numbers, which measured
3× faster than NCHW windows. Working a few images at a time (``backend.block_bytes``) keeps
the columns in cache between the copy and the GEMM, and the input gradient's column matrix
in cache between its GEMM and col2im (3-4× faster than whole-batch passes on the CPU). col2im
adds each kernel offset's slab straight into the input gradient with one strided slice-add
per offset, only the taps that fall inside the input (no padded buffer) — never ``add.at``.
The output is a channels-last array seen through an NCHW view; elementwise layers keep that
layout, the next convolution reads it without a transpose, and so does the backward: the
output gradient's rows (N·Ho·Wo, O) are a view of a channels-last gradient, which the two
backward GEMMs read as they are (input gradient) and transposed (weight gradient).

Only the gradients something needs are computed (``needs_input_grad``): a batch of images
that does not require a gradient costs no input-gradient GEMM. The weight gradient rebuilds
each block's columns in cache on the CPU; where work is not blocked (a GPU) the forward keeps
its column matrix for it instead. Either way the first backward releases what it used, and
``create_graph=True`` goes through the same Functions.

Max pooling routes the gradient to the first maximum of each window (PyTorch's tie rule,
NaN counts as a maximum); its backward and backward-of-backward are a scatter and a gather
at those positions. Average pooling is linear: a sum of strided slices, whose adjoint is a
slice-add. Batch normalisation in training mode is one fused Function (1.3x faster than the
composite) whose backward is written with Tensor operations; in eval mode it is Tensor
operations.
"""
from __future__ import annotations

import numbers

import threading

import numpy as np

from .. import backend
from ..autograd import ops
from ..autograd.functional import *  # noqa: F401,F403  (torch.nn.functional's composites)
from ..autograd.functional import __all__ as _autograd_functional_all
from ..autograd.tensor import Function, Tensor, as_tensor, is_grad_enabled

__all__ = list(_autograd_functional_all) + [
    "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "batch_norm", "Conv2dFunction", "ConvTranspose2dFunction", "Conv2dWeightGradFunction",
    "MaxPool2dFunction", "AvgPool2dFunction",
]


# ============================================================================ argument checks

def _is_int(v):
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool)


def _pair(v, name, low):
    """``v`` as a pair of ints ``>= low``; an int ``k`` means ``(k, k)``."""
    if _is_int(v):
        v = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_int(a) for a in v):
        v = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    if v[0] < low or v[1] < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    return v


def _floating(x, name):
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    return x


def _check_same(x, w, name):
    if w.device != x.device:
        raise ValueError(f"input is on {x.device} but {name} is on {w.device}")


def _promote(*tensors):
    """Cast to the common floating dtype (NumPy's promotion, as every other npjem op does);
    the casts are differentiable, so each gradient comes back in its input's dtype."""
    dt = np.result_type(*[t.dtype for t in tensors if t is not None])
    return tuple(None if t is None else ops.astype(t, dt) for t in tensors)


# ============================================================================ convolution kernels

class _ConvGeometry:
    """Kernel size, stride, dilation, ``((top, bottom), (left, right))`` padding, groups."""

    __slots__ = ("kh", "kw", "sh", "sw", "dh", "dw", "pads", "groups")

    def __init__(self, kernel, stride, pads, dilation, groups):
        self.kh, self.kw = kernel
        self.sh, self.sw = stride
        self.dh, self.dw = dilation
        self.pads = pads
        self.groups = groups

    def padded_hw(self, h, w):
        (pt, pb), (pl, pr) = self.pads
        return h + pt + pb, w + pl + pr

    def out_hw(self, h, w):
        hp, wp = self.padded_hw(h, w)
        return ((hp - self.dh * (self.kh - 1) - 1) // self.sh + 1,
                (wp - self.dw * (self.kw - 1) - 1) // self.sw + 1)

    def offsets(self, ho, wo):
        """(i, j, rows, cols): the slices of the padded input that kernel offset (i, j) sees."""
        for i in range(self.kh):
            hs = slice(i * self.dh, i * self.dh + self.sh * (ho - 1) + 1, self.sh)
            for j in range(self.kw):
                yield i, j, hs, slice(j * self.dw, j * self.dw + self.sw * (wo - 1) + 1, self.sw)


def _blocks(n, per_image_bytes, xp):
    """Image ranges ``[(n0, n1), …]`` whose working set fits ``backend.block_bytes``, and their size."""
    bb = backend.block_bytes(xp)
    c = n if bb is None else max(1, min(n, bb // max(int(per_image_bytes), 1)))
    return [(i, min(i + c, n)) for i in range(0, n, c)], c


class _Im2col:
    """Column matrices of a few images of ``x`` (N, C, H, W) at a time.

    ``cols(n0, n1, out)`` returns the rows of images n0:n1 as an array of shape
    (m, G, K') with m = (n1 − n0)·Ho·Wo and K' = kh·kw·C/G, columns ordered (i, j, c) inside
    each group. Blocks may be made in several threads at once: each thread keeps its own
    padded buffer and scratch columns.
    """

    def __init__(self, x, g: _ConvGeometry):
        self.xp = xp = backend.get_array_module(x)
        self.x, self.g = x, g
        n, c, h, w = x.shape
        self.h, self.w, self.c = h, w, c
        self.ho, self.wo = g.out_hw(h, w)
        self.cg = c // g.groups
        self.k = g.kh * g.kw * self.cg
        self.ranges, self.block = _blocks(n, self.ho * self.wo * c * g.kh * g.kw * x.itemsize, xp)
        (pt, pb), (pl, pr) = g.pads
        # Copy into a padded channels-last buffer unless x already is channels-last and
        # unpadded (the output of a previous convolution, through elementwise layers).
        self.copy = bool(pt or pb or pl or pr) or x.strides[1] != x.itemsize
        self._bufs, self._scratch = {}, {}

    def rows(self, n0, n1):
        return n0 * self.ho * self.wo, n1 * self.ho * self.wo

    def _padded(self):
        buf = self._bufs.get(threading.get_ident())
        if buf is None:  # zeroed once: only the interior is ever written
            hp, wp = self.g.padded_hw(self.h, self.w)
            buf = self._bufs[threading.get_ident()] = self.xp.zeros(
                (self.block, hp, wp, self.c), dtype=self.x.dtype)
        return buf

    def cols(self, n0, n1, out=None):
        xp, g = self.xp, self.g
        cc = n1 - n0
        src = self.x[n0:n1].transpose(0, 2, 3, 1)
        if self.copy:
            (pt, _), (pl, _) = g.pads
            buf = self._padded()[:cc]
            buf[:, pt:pt + self.h, pl:pl + self.w, :] = src
            src = buf
        s_n, s_h, s_w, s_c = src.strides
        shape = (cc, self.ho, self.wo, g.groups, g.kh, g.kw, self.cg)
        windows = xp.lib.stride_tricks.as_strided(
            src, shape=shape,
            strides=(s_n, g.sh * s_h, g.sw * s_w, self.cg * s_c, g.dh * s_h, g.dw * s_w, s_c))
        if out is None:
            out = xp.empty(shape, dtype=self.x.dtype)
        else:
            out = out.reshape(shape)
        out[...] = windows
        return out.reshape(cc * self.ho * self.wo, g.groups, self.k)

    def scratch(self, rows):
        """A reusable buffer of ``rows`` rows, this thread's, for columns that are not kept."""
        buf = self._scratch.get(threading.get_ident())
        if buf is None:
            buf = self._scratch[threading.get_ident()] = self.xp.empty(
                (self.block * self.ho * self.wo, self.g.groups, self.k), dtype=self.x.dtype)
        return buf[:rows]

    def each_block(self, fn):
        """``fn(n0, n1)`` for every block of images, the blocks shared out to threads
        (``backend.parallel_for``; each block's GEMM on one BLAS thread); results in order."""
        return backend.parallel_for(self.xp, self.x.shape[0], fn, self.block, blas=True)


# A piece of a threaded copy (backend.parallel_for) should carry enough bytes to pay for
# handing it to a thread (tens of microseconds).
_PIECE_BYTES = 1 << 18


def _images_per_piece(image_bytes):
    return max(1, _PIECE_BYTES // max(int(image_bytes), 1))


def _new_channels_last(xp, shape, dtype, zeroed=False):
    """A new (N, C, H, W) array laid out channels-last (C fastest), which owns its memory.

    A transposed view of an (N, H, W, C) array has the layout but not the ownership, and the
    engine copies a view before storing it as a ``.grad`` (it must alias nothing): 16 MB per
    step for the input gradient of a Langevin sampler on a convolutional energy. ``empty_like``
    of that view, in its default order "K", gives the layout in an array of its own; the view's
    buffer is never written, so it costs no page of memory."""
    n, c, h, w = shape
    view = xp.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)
    return xp.zeros_like(view) if zeroed else xp.empty_like(view)


def _weight_matrix(w, groups):
    """(O, C/G, kh, kw) → (G, O/G, K') with columns ordered (i, j, c) like the column matrix."""
    xp = backend.get_array_module(w)
    o, cg, kh, kw = w.shape
    wm = w.reshape(groups, o // groups, cg, kh, kw).transpose(0, 1, 3, 4, 2)
    return xp.ascontiguousarray(wm).reshape(groups, o // groups, kh * kw * cg)


def _weight_from_matrix(m, shape):
    xp = backend.get_array_module(m)
    o, cg, kh, kw = shape
    groups = m.shape[0]
    w = m.reshape(groups, o // groups, kh, kw, cg).transpose(0, 1, 4, 2, 3)
    return xp.ascontiguousarray(w).reshape(shape)


def _gy_rows(gy):
    """gy (N, O, Ho, Wo) → (N·Ho·Wo, O): the rows of the output gradient, channels-last.

    A view, without a copy, when gy is channels-last in memory (what the forward returns and
    elementwise layers and BatchNorm keep); a copy otherwise. The input-gradient GEMM reads
    these rows as they are, the weight-gradient GEMM their transposed view, which OpenBLAS runs
    as fast as a contiguous (O, N·Ho·Wo) copy; that transposing copy cost 13–17 % of the
    SimCLR step's CPU time (benchmarks/profile_step.py, docs/performance.md).
    """
    xp = backend.get_array_module(gy)
    n, o, ho, wo = gy.shape
    rows = gy.transpose(0, 2, 3, 1)
    if rows.flags.c_contiguous:
        return rows.reshape(n * ho * wo, o)
    out = xp.empty(rows.shape, dtype=gy.dtype)

    def copy(a, b):
        out[a:b] = rows[a:b]

    backend.parallel_for(xp, n, copy, _images_per_piece(out[:1].nbytes))
    return out.reshape(n * ho * wo, o)


def _kept_range(offset, out_len, in_len, stride, pad):
    """Output positions p whose tap p·stride + offset − pad lands inside the unpadded input:
    (slice of p, slice of input positions). Taps on the padding are dropped, never added."""
    lo = max(0, -((offset - pad) // stride))
    hi = min(out_len, (in_len - 1 + pad - offset) // stride + 1)
    if hi <= lo:
        return None
    first = lo * stride + offset - pad
    return slice(lo, hi), slice(first, first + (hi - lo - 1) * stride + 1, stride)


def _col2im(d, out, g):
    """Adds each kernel offset's slab of the column gradient ``d`` (n, Ho, Wo, G, kh, kw, C/G)
    into ``out`` (n, H, W, G, C/G, zeroed): one strided slice-add per offset, the offsets in
    row-major order. Only taps inside the input are added, so no padded buffer and no copy
    out of it; each element receives the same additions in the same order as before."""
    _, ho, wo = d.shape[:3]
    _, h, w = out.shape[:3]
    (pt, _), (pl, _) = g.pads
    for i in range(g.kh):
        rows = _kept_range(i * g.dh, ho, h, g.sh, pt)
        if rows is None:
            continue
        for j in range(g.kw):
            cols = _kept_range(j * g.dw, wo, w, g.sw, pl)
            if cols is None:
                continue
            out[:, rows[1], cols[1]] += d[:, rows[0], cols[0], :, i, j, :]
    return out


def _conv_forward(x, w, b, g, keep_cols):
    """y = A_W x + b as arrays; also the whole column matrix when ``keep_cols``."""
    xp = backend.get_array_module(x)
    n = x.shape[0]
    o = w.shape[0]
    groups = g.groups
    og = o // groups
    im = _Im2col(x, g)
    wm = _weight_matrix(w, groups)
    m = n * im.ho * im.wo
    y4 = _new_channels_last(xp, (n, o, im.ho, im.wo), x.dtype)
    y = y4.transpose(0, 2, 3, 1).reshape(m, o)  # a view: the GEMM writes y4's rows
    kept = xp.empty((m, groups, im.k), dtype=x.dtype) if keep_cols else None

    def block(n0, n1):  # writes rows r0:r1 of y (and of kept) only
        r0, r1 = im.rows(n0, n1)
        cols = im.cols(n0, n1, kept[r0:r1] if keep_cols else im.scratch(r1 - r0))
        if groups == 1:
            xp.matmul(cols[:, 0, :], wm[0].T, out=y[r0:r1])
        else:
            y[r0:r1].reshape(r1 - r0, groups, og)[...] = xp.matmul(
                cols.transpose(1, 0, 2), wm.transpose(0, 2, 1)).transpose(1, 0, 2)
        if b is not None:
            y[r0:r1] += b

    im.each_block(block)
    return y4, kept


def _full_correlation(g):
    """For a stride-1, one-group geometry, the geometry of gx = A_Wᵀ gy as a forward
    correlation of gy with the flipped kernel: gy padded by d·(k − 1) − p on each side (None
    when a padding exceeds d·(k − 1), which would need cropping instead)."""
    if (g.sh, g.sw) != (1, 1) or g.groups != 1:
        return None
    (pt, pb), (pl, pr) = g.pads
    eh, ew = g.dh * (g.kh - 1), g.dw * (g.kw - 1)
    pads = ((eh - pt, eh - pb), (ew - pl, ew - pr))
    if min(pads[0] + pads[1]) < 0:
        return None
    return _ConvGeometry((g.kh, g.kw), (1, 1), pads, (g.dh, g.dw), 1)


def _conv_input_grad(gy, w, g, in_hw, gt=None):
    """gx = A_Wᵀ gy: per block, the GEMM gy_rows @ W_mat, then col2im by slice-adds.

    With stride 1 and one group, A_Wᵀ gy is itself a correlation: gx[n, c] = Σ_{o, i, j}
    W[o, c, k−1−i, k−1−j] · gy_pad[n, o, p + i·d, q + j·d], so it runs as the forward does
    (im2col of gy, one GEMM writing gx's rows), with no col2im: its nine read-modify-write
    passes cost more than im2col's one write (25 % of the input gradient of a 64→64 3×3
    convolution, benchmarks/conv.py). The sums are grouped differently (last-bit float
    differences against the col2im form)."""
    xp = backend.get_array_module(gy)
    full = _full_correlation(g)
    if full is not None:
        flipped = xp.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        return _conv_forward(gy, flipped, None, full, False)[0]
    n, o, ho, wo = gy.shape
    _, cg, kh, kw = w.shape
    groups = g.groups
    og, c = o // groups, cg * groups
    h, wd = in_hw
    gt = _gy_rows(gy) if gt is None else gt
    gt3 = gt.reshape(n * ho * wo, groups, og).transpose(1, 0, 2)
    wm = _weight_matrix(w, groups)
    gx4 = _new_channels_last(xp, (n, c, h, wd), gy.dtype, zeroed=True)
    gx = gx4.transpose(0, 2, 3, 1).reshape(n, h, wd, groups, cg)  # a view
    _, per_block = _blocks(n, ho * wo * c * kh * kw * gy.itemsize, xp)
    hw = ho * wo

    def block(n0, n1):  # writes images n0:n1 of gx only
        cc = n1 - n0
        r0, r1 = n0 * hw, n1 * hw
        if groups == 1:
            d = (gt[r0:r1] @ wm[0]).reshape(cc, ho, wo, 1, kh, kw, cg)
        else:
            d = xp.matmul(gt3[:, r0:r1], wm)
            d = d.reshape(groups, cc, ho, wo, kh, kw, cg).transpose(1, 2, 3, 0, 4, 5, 6)
        _col2im(d, gx[n0:n1], g)

    backend.parallel_for(xp, n, block, per_block, blas=True)
    return gx4


def _conv_weight_grad(x, gy, g, w_shape, cols=None, gt=None):
    """gW = gy_rowsᵀ @ cols(x), reshaped to (O, C/G, kh, kw); recomputes columns when not kept.

    Recomputed, the blocks' products are added in block order whatever thread made them, so
    the sum is the same with any number of threads."""
    xp = backend.get_array_module(x)
    o = w_shape[0]
    groups = g.groups
    og = o // groups
    gt = _gy_rows(gy) if gt is None else gt
    gt3 = gt.reshape(gt.shape[0], groups, og).transpose(1, 2, 0)  # (G, O/G, rows), a view
    if cols is not None:
        if groups == 1:
            gm = (gt.T @ cols[:, 0, :])[None]
        else:
            gm = xp.matmul(gt3, cols.transpose(1, 0, 2))
        return _weight_from_matrix(gm, w_shape)
    im = _Im2col(x, g)

    def block(n0, n1):
        r0, r1 = im.rows(n0, n1)
        c = im.cols(n0, n1, im.scratch(r1 - r0))
        if groups == 1:
            return (gt[r0:r1].T @ c[:, 0, :])[None]
        return xp.matmul(gt3[:, :, r0:r1], c.transpose(1, 0, 2))

    gm = xp.zeros((groups, og, im.k), dtype=x.dtype)
    for part in im.each_block(block):
        gm += part
    return _weight_from_matrix(gm, w_shape)


# ============================================================================ convolution Functions

class Conv2dFunction(Function):
    """y = A_W x (+ b): cross-correlation, ``torch.nn.functional.conv2d``.

    y[n, o, p, q] = b[o] + Σ_{c ∈ group(o), i, j} W[o, c, i, j] · x_pad[n, c, p·s + i·d, q·s + j·d]

    With ``cache_cols`` the forward keeps its column matrix for the weight gradient (the
    first backward uses it and lets it go; a second backward, or the input-only case,
    recomputes nothing it does not need).
    """

    def __init__(self, geometry, cache_cols=False):
        self.geometry = geometry
        self.cache_cols = cache_cols
        self._cols = None

    def forward(self, x, w, b=None):
        y, self._cols = _conv_forward(x, w, b, self.geometry, self.cache_cols)
        return y

    def backward(self, gy):
        x, w = self.inputs[0], self.inputs[1]
        need = self.needs_input_grad
        g = self.geometry
        gt = _gy_rows(gy.data) if (need[0] or need[1]) else None
        gx = ConvTranspose2dFunction(g, x.shape[2:], gt)(gy, w) if need[0] else None
        gw = None
        if need[1]:
            cols, self._cols = self._cols, None
            gw = Conv2dWeightGradFunction(g, w.shape, cols, gt)(x, gy)
        else:
            self._cols = None
        if len(self.inputs) == 2:
            return gx, gw
        gb = gy.sum(axis=(0, 2, 3)) if need[2] else None
        return gx, gw, gb


class ConvTranspose2dFunction(Function):
    """gx = A_Wᵀ gy: the input gradient of a convolution, ``conv_transpose2d`` without bias.

    gx[n, c, h, w] = Σ_{o, i, j : h = p·s + i·d − pad_top, w = q·s + j·d − pad_left} W[o, c, i, j] gy[n, o, p, q]

    ``in_hw`` is the (H, W) of the convolution's input, which a stride does not determine.
    """

    def __init__(self, geometry, in_hw, gy_rows=None):
        self.geometry = geometry
        self.in_hw = tuple(in_hw)
        self._gt = gy_rows

    def forward(self, gy, w):
        gt, self._gt = self._gt, None
        return _conv_input_grad(gy, w, self.geometry, self.in_hw, gt)

    def backward(self, ggx):
        gy, w = self.inputs
        need = self.needs_input_grad
        g = self.geometry
        g_gy = Conv2dFunction(g)(ggx, w) if need[0] else None
        g_w = Conv2dWeightGradFunction(g, w.shape)(ggx, gy) if need[1] else None
        return g_gy, g_w


class Conv2dWeightGradFunction(Function):
    """gW = ∂⟨A_W x, gy⟩/∂W:  gW[o, c, i, j] = Σ_{n, p, q} gy[n, o, p, q] · x_pad[n, c, p·s + i·d, q·s + j·d]."""

    def __init__(self, geometry, w_shape, cols=None, gy_rows=None):
        self.geometry = geometry
        self.w_shape = tuple(w_shape)
        self._cols = cols
        self._gt = gy_rows

    def forward(self, x, gy):
        cols, self._cols = self._cols, None
        gt, self._gt = self._gt, None
        return _conv_weight_grad(x, gy, self.geometry, self.w_shape, cols, gt)

    def backward(self, ggw):
        x, gy = self.inputs
        need = self.needs_input_grad
        g = self.geometry
        g_x = ConvTranspose2dFunction(g, x.shape[2:])(gy, ggw) if need[0] else None
        g_gy = Conv2dFunction(g)(x, ggw) if need[1] else None
        return g_x, g_gy


def _conv_padding(padding, kernel, stride, dilation):
    """PyTorch's padding argument → ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
            out = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))  # the extra row goes after, as PyTorch
            return tuple(out)
        raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    ph, pw = _pair(padding, "padding", 0)
    return ((ph, ph), (pw, pw))


def _conv_geometry(x, weight, stride, padding, dilation, groups, what):
    if weight.ndim != 4:
        raise ValueError(f"{what}: weight must be 4-D (out_channels, in_channels/groups, kh, kw), "
                         f"got shape {weight.shape}")
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    stride = _pair(stride, "stride", 1)
    dilation = _pair(dilation, "dilation", 1)
    kernel = tuple(weight.shape[2:])
    pads = _conv_padding(padding, kernel, stride, dilation)
    return _ConvGeometry(kernel, stride, pads, dilation, int(groups))


def _batched(x, what):
    if x.ndim == 3:
        return ops.unsqueeze(x, 0), True
    if x.ndim != 4:
        raise ValueError(f"{what}: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x.shape}")
    return x, False


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """2-D cross-correlation, ``torch.nn.functional.conv2d`` (NCHW, weight (O, C/groups, kh, kw)).

    ``padding`` is an int, a pair, ``'valid'`` or ``'same'`` (stride 1). Differentiable to any
    order in input, weight and bias.
    """
    x, unbatched = _batched(_floating(input, "input"), "conv2d")
    weight = _floating(weight, "weight")
    _check_same(x, weight, "weight")
    g = _conv_geometry(x, weight, stride, padding, dilation, groups, "conv2d")
    o, cg = weight.shape[0], weight.shape[1]
    c = x.shape[1]
    if o % g.groups:
        raise ValueError(f"conv2d: out_channels={o} must be divisible by groups={g.groups}")
    if c != cg * g.groups:
        raise ValueError(f"conv2d: input has {c} channels, expected in_channels = weight.shape[1]·groups "
                         f"= {cg}·{g.groups} = {cg * g.groups} (input shape {x.shape}, weight shape "
                         f"{weight.shape})")
    ho, wo = g.out_hw(*x.shape[2:])
    if ho < 1 or wo < 1:
        raise ValueError(f"conv2d: input of spatial size {tuple(x.shape[2:])} with padding {g.pads} is "
                         f"smaller than the dilated kernel "
                         f"({g.dh * (g.kh - 1) + 1}, {g.dw * (g.kw - 1) + 1})")
    if bias is not None:
        bias = _floating(bias, "bias")
        _check_same(x, bias, "bias")
        if bias.shape != (o,):
            raise ValueError(f"conv2d: bias must have shape ({o},), got {bias.shape}")
    x, weight, bias = _promote(x, weight, bias)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    # Keep the column matrix for the weight gradient only where work is not blocked (a GPU).
    # On the CPU the blocked weight gradient rebuilds each block's columns in cache, which
    # measured as fast as streaming a kept matrix back from memory (benchmarks/conv.py prints
    # both), and a kept matrix costs kh·kw times the input's memory per layer.
    cache = is_grad_enabled() and weight.requires_grad and backend.block_bytes(x.xp) is None
    y = Conv2dFunction(g, cache_cols=cache)(*inputs)
    return ops.squeeze(y, 0) if unbatched else y


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,  # noqa: A002
                     dilation=1):
    """Transposed convolution, ``torch.nn.functional.conv_transpose2d`` (weight (C_in, C_out/groups, kh, kw)).

    The adjoint of ``conv2d`` with the same weight: H_out = (H_in − 1)·s − 2p + d(k − 1) + output_padding + 1.
    """
    x, unbatched = _batched(_floating(input, "input"), "conv_transpose2d")
    weight = _floating(weight, "weight")
    _check_same(x, weight, "weight")
    if isinstance(padding, str):
        raise ValueError(f"conv_transpose2d: padding must be an int or a pair, got {padding!r}")
    g = _conv_geometry(x, weight, stride, padding, dilation, groups, "conv_transpose2d")
    op = _pair(output_padding, "output_padding", 0)
    if op[0] >= g.sh or op[1] >= g.sw:
        raise ValueError(f"output_padding {op} must be smaller than stride {(g.sh, g.sw)}")
    cin, coutg = weight.shape[0], weight.shape[1]
    if x.shape[1] != cin:
        raise ValueError(f"conv_transpose2d: input has {x.shape[1]} channels, weight expects {cin}")
    if cin % g.groups:
        raise ValueError(f"conv_transpose2d: in_channels={cin} must be divisible by groups={g.groups}")
    hin, win = x.shape[2:]
    (pt, pb), (pl, pr) = g.pads
    h = (hin - 1) * g.sh - pt - pb + g.dh * (g.kh - 1) + op[0] + 1
    w = (win - 1) * g.sw - pl - pr + g.dw * (g.kw - 1) + op[1] + 1
    if h < 1 or w < 1:
        raise ValueError(f"conv_transpose2d: the output size ({h}, {w}) is not positive")
    x, weight = _promote(x, weight)
    y = ConvTranspose2dFunction(g, (h, w))(x, weight)
    if bias is not None:
        bias = _floating(bias, "bias")
        _check_same(x, bias, "bias")
        c_out = coutg * g.groups
        if bias.shape != (c_out,):
            raise ValueError(f"conv_transpose2d: bias must have shape ({c_out},), got {bias.shape}")
        y = y + ops.reshape(bias, (1, c_out, 1, 1))
    return ops.squeeze(y, 0) if unbatched else y


# ============================================================================ pooling

def _pool_out(length, k, s, p, d, ceil_mode):
    """PyTorch's pooling output size, with its ceil_mode rule (the last window starts inside)."""
    num = length + 2 * p - d * (k - 1) - 1
    out = (num + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= length + p:
        out -= 1
    return out


class _PoolGeometry:
    """Windows of a 2-D pooling over the last two axes of (N, C, H, W)."""

    def __init__(self, in_hw, kernel, stride, padding, dilation, ceil_mode, what):
        h, w = in_hw
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        if ph > kh // 2 or pw > kw // 2:
            raise ValueError(f"{what}: padding {padding} must be at most half the kernel size {kernel}")
        ho = _pool_out(h, kh, sh, ph, dh, ceil_mode)
        wo = _pool_out(w, kw, sw, pw, dw, ceil_mode)
        if ho < 1 or wo < 1:
            raise ValueError(f"{what}: input of spatial size {(h, w)} is too small for kernel {kernel} "
                             f"with padding {padding} and dilation {dilation}")
        # ceil_mode may let the last window run past the padding: pad those rows as well.
        pb = max(ph, (ho - 1) * sh + dh * (kh - 1) + 1 - h - ph)
        pr = max(pw, (wo - 1) * sw + dw * (kw - 1) + 1 - w - pw)
        self.in_hw, self.out_hw = (h, w), (ho, wo)
        self.kernel, self.stride, self.dilation = (kh, kw), (sh, sw), (dh, dw)
        self.padding = (ph, pw)
        self.pads = ((ph, pb), (pw, pr))
        self.overlap = sh < dh * (kh - 1) + 1 or sw < dw * (kw - 1) + 1

    def offsets(self):
        """(k, i, j, index) for each kernel offset; index slices the padded (N, C, Hp, Wp) array."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        ho, wo = self.out_hw
        for i in range(kh):
            hs = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            for j in range(kw):
                yield i * kw + j, i, j, (Ellipsis, hs, slice(j * dw, j * dw + sw * (wo - 1) + 1, sw))

    def padded_shape(self, lead):
        (pt, pb), (pl, pr) = self.pads
        h, w = self.in_hw
        return tuple(lead) + (h + pt + pb, w + pl + pr)

    def pad(self, x, value):
        (pt, pb), (pl, pr) = self.pads
        if not (pt or pb or pl or pr):
            return x
        xp = backend.get_array_module(x)
        h, w = self.in_hw
        out = xp.empty_like(x, shape=self.padded_shape(x.shape[:-2]))
        out.fill(value)
        out[..., pt:pt + h, pl:pl + w] = x
        return out

    def zeros_padded(self, like):
        xp = backend.get_array_module(like)
        out = xp.empty_like(like, shape=self.padded_shape(like.shape[:-2]))
        out.fill(0)
        return out

    def crop(self, xpad):
        (pt, _), (pl, _) = self.pads
        h, w = self.in_hw
        return xpad[..., pt:pt + h, pl:pl + w]


def _select(a, hit, xp):
    """``a`` where ``hit``, else 0. A multiply by the mask is ~10x faster than ``where`` on NumPy
    (no data-dependent branch); it would turn a non-finite value outside the mask into NaN
    (inf·0), so non-finite inputs take ``where``."""
    if xp.isfinite(a).all():
        return a * hit
    return xp.where(hit, a, 0)


class MaxPool2dFunction(Function):
    """y = max over each window; the argmax (first maximum, NaN wins) is kept for backward."""

    def __init__(self, geometry):
        self.geometry = geometry

    def forward(self, x):
        xp = backend.get_array_module(x)
        g = self.geometry
        xpad = g.pad(x, -np.inf)
        y = idx = None
        for k, _, _, sl in g.offsets():
            v = xpad[sl]
            if y is None:
                y = v.copy(order="K")
                idt = np.int8 if g.kernel[0] * g.kernel[1] <= 127 else np.int32
                idx = xp.zeros(y.shape, dtype=idt)
                continue
            better = v > y
            better |= xp.isnan(v)  # PyTorch: a NaN is the maximum (and a later NaN moves it)
            idx += better * (k - idx)  # idx = k where better: arithmetic, no branch
            xp.maximum(y, v, out=y)  # propagates NaN, like the rule above
        self.argmax = idx
        return y

    def backward(self, gy):
        return _MaxPoolScatter(self.geometry, self.argmax)(gy)


class _MaxPoolScatter(Function):
    """gx = Sᵀ gy: each window's gradient goes to its argmax (adds up where windows overlap)."""

    def __init__(self, geometry, argmax):
        self.geometry, self.argmax = geometry, argmax

    def forward(self, gy):
        xp = backend.get_array_module(gy)
        g = self.geometry
        gpad = g.zeros_padded(gy)
        finite = bool(xp.isfinite(gy).all())
        for k, _, _, sl in g.offsets():
            hit = self.argmax == k
            if not finite:
                gpad[sl] += xp.where(hit, gy, 0)
            elif g.overlap:
                gpad[sl] += gy * hit
            else:  # disjoint windows: write each slab once, no temporary
                xp.multiply(gy, hit, out=gpad[sl])
        return g.crop(gpad)

    def backward(self, ggx):
        return _MaxPoolGather(self.geometry, self.argmax)(ggx)


class _MaxPoolGather(Function):
    """y = S x: the value of ``x`` at each window's argmax (the adjoint of the scatter)."""

    def __init__(self, geometry, argmax):
        self.geometry, self.argmax = geometry, argmax

    def forward(self, x):
        xp = backend.get_array_module(x)
        g = self.geometry
        xpad = g.pad(x, 0)
        out = None
        for k, _, _, sl in g.offsets():
            part = _select(xpad[sl], self.argmax == k, xp)
            out = part if out is None else out + part
        return out

    def backward(self, gy):
        return _MaxPoolScatter(self.geometry, self.argmax)(gy)


def _pool_args(kernel_size, stride, padding, dilation):
    kernel = _pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    dilation = _pair(dilation, "dilation", 1)
    return kernel, stride, padding, dilation


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,  # noqa: A002
               return_indices=False):
    """2-D max pooling, ``torch.nn.functional.max_pool2d`` (stride defaults to kernel_size).

    Padding counts as −∞. The gradient goes to the first maximum of each window in row-major
    order (PyTorch's rule); twice differentiable (the second derivative is a gather at the same
    positions). ``return_indices`` also returns the flat index h·W + w of each maximum (−1 for a window
    that, with dilation, sees only padding: its value is −∞ and it passes no gradient).
    """
    x, unbatched = _batched(_floating(input, "input"), "max_pool2d")
    kernel, stride, padding, dilation = _pool_args(kernel_size, stride, padding, dilation)
    g = _PoolGeometry(x.shape[2:], kernel, stride, padding, dilation, bool(ceil_mode), "max_pool2d")
    fn = MaxPool2dFunction(g)
    y = fn(x)
    if unbatched:
        y = ops.squeeze(y, 0)
    if not return_indices:
        return y
    xp = x.xp
    kw = g.kernel[1]
    (sh, sw), (dh, dw) = g.stride, g.dilation
    (pt, _), (pl, _) = g.pads
    ho, wo = g.out_hw
    a = fn.argmax.astype(np.int64)
    rows = xp.arange(ho).reshape(ho, 1) * sh + (a // kw) * dh - pt
    cols = xp.arange(wo) * sw + (a % kw) * dw - pl
    flat = rows * g.in_hw[1] + cols
    outside = (rows < 0) | (rows >= g.in_hw[0]) | (cols < 0) | (cols >= g.in_hw[1])
    flat = xp.where(outside, -1, flat)  # a window over padding only
    if unbatched:
        flat = flat[0]
    return y, Tensor(flat)


class AvgPool2dFunction(Function):
    """The linear map y = (Σ_offsets x_pad[window offset]) / divisor, or its adjoint.

    ``adjoint=False``: average pooling. ``adjoint=True``: gx = crop(Σ_offsets slice-add of
    gy / divisor). Each one's backward is the other, so any order of derivative works.
    """

    def __init__(self, geometry, divisor, adjoint=False):
        self.geometry, self.divisor, self.adjoint = geometry, divisor, adjoint

    def forward(self, a):
        g = self.geometry
        if not self.adjoint:
            xpad = g.pad(a, 0)
            y = None
            for _, _, _, sl in g.offsets():
                if y is None:
                    y = xpad[sl].copy(order="K")
                else:
                    y += xpad[sl]
            y /= self.divisor
            return y
        gd = a / self.divisor
        gpad = g.zeros_padded(a)
        for _, _, _, sl in g.offsets():
            gpad[sl] += gd
        return g.crop(gpad)

    def backward(self, gy):
        return AvgPool2dFunction(self.geometry, self.divisor, not self.adjoint)(gy)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,  # noqa: A002
               count_include_pad=True, divisor_override=None):
    """2-D average pooling, ``torch.nn.functional.avg_pool2d``.

    Divisor per window: ``divisor_override`` if given; else the number of window positions
    inside the zero-padded input (``count_include_pad=True``) or inside the input itself.
    """
    x, unbatched = _batched(_floating(input, "input"), "avg_pool2d")
    kernel, stride, padding, dilation = _pool_args(kernel_size, stride, padding, 1)
    g = _PoolGeometry(x.shape[2:], kernel, stride, padding, dilation, bool(ceil_mode), "avg_pool2d")
    if divisor_override is not None:
        if not _is_int(divisor_override) or divisor_override < 1:
            raise ValueError(f"divisor_override must be a positive int, got {divisor_override!r}")
        divisor = float(divisor_override)
    else:
        (pt, pb), (pl, pr) = g.pads
        ph, pw = g.padding
        h, w = g.in_hw
        if count_include_pad and pb == ph and pr == pw:
            divisor = float(kernel[0] * kernel[1])
        else:
            # Count, per window, the positions that count: pool a map of ones.
            ones = np.zeros(g.padded_shape(()), dtype=np.float64)  # host
            if count_include_pad:
                ones[:pt + h + ph, :pl + w + pw] = 1.0
            else:
                ones[pt:pt + h, pl:pl + w] = 1.0
            counts = sum(ones[sl[1:]] for _, _, _, sl in g.offsets())
            divisor = backend.to_device(counts.astype(x.dtype), x.device)
    y = AvgPool2dFunction(g, divisor)(x)
    return ops.squeeze(y, 0) if unbatched else y


def _adaptive_matrix(length, out, dtype):
    """(out, length) averaging matrix of PyTorch's adaptive bins [⌊i·L/out⌋, ⌈(i+1)·L/out⌉)."""
    m = np.zeros((out, length), dtype=dtype)  # host: a small constant
    for i in range(out):
        s, e = (i * length) // out, -((-(i + 1) * length) // out)
        m[i, s:e] = 1.0 / (e - s)
    return m


def adaptive_avg_pool2d(input, output_size):  # noqa: A002
    """``torch.nn.functional.adaptive_avg_pool2d``: y = P_h x P_wᵀ with PyTorch's bins.

    ``output_size`` is an int or a pair (``None`` keeps that input size). Output 1 is the mean
    over H and W.
    """
    x, unbatched = _batched(_floating(input, "input"), "adaptive_avg_pool2d")
    if _is_int(output_size) or output_size is None:
        output_size = (output_size, output_size)
    if not (isinstance(output_size, (tuple, list)) and len(output_size) == 2
            and all(o is None or (_is_int(o) and o >= 1) for o in output_size)):
        raise ValueError(f"output_size must be a positive int or a pair of them (or None), got {output_size!r}")
    h, w = x.shape[2:]
    oh = h if output_size[0] is None else int(output_size[0])
    ow = w if output_size[1] is None else int(output_size[1])
    if (oh, ow) == (1, 1):
        y = x.mean(axis=(2, 3), keepdims=True)
    else:
        y = x
        if ow != w:
            pw = Tensor(backend.to_device(_adaptive_matrix(w, ow, x.dtype).T.copy(), x.device))
            y = ops.matmul(y, pw)
        if oh != h:
            ph = Tensor(backend.to_device(_adaptive_matrix(h, oh, x.dtype), x.device))
            y = ops.matmul(ph, y)
    return ops.squeeze(y, 0) if unbatched else y


# ============================================================================ batch normalisation

def _stat_array(t, name, c):
    if t is None:
        return None
    arr = t.data if isinstance(t, Tensor) else t
    if not backend.is_array(arr):
        raise TypeError(f"{name} must be a Tensor or an array (updated in place), got {type(t).__name__}")
    if arr.shape != (c,):
        raise ValueError(f"{name} must have shape ({c},), got {arr.shape}")
    return arr


def _channels_last(a):
    """``a`` (N, C, …) seen with the channel axis last, (M, C) without a copy when the channels
    are the fastest axis in memory (a convolution's output, a Linear's (N, C)); otherwise the
    moved-axis view (N, …, C). Either way an elementwise result keeps ``a``'s memory layout."""
    xp = backend.get_array_module(a)
    v = xp.moveaxis(a, 1, -1)
    return v.reshape(-1, a.shape[1]) if v.flags.c_contiguous else v


def _from_channels_last(r, shape):
    """Undo ``_channels_last`` for an array ``r`` of the same layout: a view of shape ``shape``."""
    xp = backend.get_array_module(r)
    moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
    return xp.moveaxis(r.reshape(moved), -1, 1)


def _channel_dot(a, b):
    """Σ over everything but the last axis of a·b, per channel, without the a·b temporary."""
    xp = backend.get_array_module(a)
    sub = "abcdefghijklmnopqrstuvwxy"[:a.ndim - 1] + "z"
    return xp.einsum(f"{sub},{sub}->z", a, b)


class _BatchNormTrain(Function):
    """y = (x − μ_B)·γ/√(σ²_B + ε) + β with the batch statistics over ``axes`` (training mode).

    Fused because it measured 1.3x faster forward+backward than the Tensor-op composite on
    NumPy (benchmarks: (256, 64, 16, 16) float32). With x̂ = (x − μ)/√(σ² + ε) and n values
    per channel:

        ∂β = Σ gy,   ∂γ = Σ gy·x̂,   ∂x = γ/√(σ² + ε) · (gy − ∂β/n − x̂·∂γ/n).

    Under ``create_graph`` the backward is written with Tensor operations and μ, σ² are
    recomputed from x, so the gradient is itself differentiable in x, γ and gy (second-order
    methods need that); otherwise it runs on arrays in fewer passes (``_backward_arrays``).

    The array passes run on x seen channels-last, (M, C) (``_channels_last``: no copy for a
    convolution's output), and the two sums of products, Σ(x − μ)² and Σ gy·(x − μ), are
    ``einsum`` contractions that make no full-size temporary: BatchNorm's forward and backward
    took 21 % of the SimCLR step before, 2 full-size passes fewer each now. The contraction
    sums in a different order from ``(d * d).mean`` (the float32 result differs in the last
    bits; the formula is the same).
    """

    def __init__(self, axes, shape, eps, has_weight, has_bias):
        self.axes, self.shape, self.eps = axes, shape, eps
        self.has_weight, self.has_bias = has_weight, has_bias

    def forward(self, x, *wb):
        xp = backend.get_array_module(x)
        r = _channels_last(x)
        n = x.size // x.shape[1]
        weight = wb[0] if self.has_weight else None
        bias = wb[-1] if self.has_bias else None
        if r.ndim == 2:
            d, mean, var, invstd = _bn_forward_rows(r, n, self.eps, weight, bias)
        else:
            mean = r.mean(axis=tuple(range(r.ndim - 1)))
            d = r - mean
            var = _channel_dot(d, d) / n
            invstd = 1.0 / xp.sqrt(var + self.eps)
            d *= invstd if weight is None else invstd * weight
            if bias is not None:
                d += bias
        self.mean, self.var, self.invstd = mean, var, invstd
        return _from_channels_last(d, x.shape)

    def backward(self, gy):
        x = self.inputs[0]
        w = self.inputs[1] if self.has_weight else None
        need = self.needs_input_grad
        n = x.size // x.shape[1]
        if not is_grad_enabled():
            return self._backward_arrays(gy.data, x.data, None if w is None else w.data, n, need)
        # create_graph: the statistics as functions of x, so the gradient is differentiable in x.
        d = x - x.mean(axis=self.axes, keepdims=True)
        invstd = 1.0 / ops.sqrt((d * d).mean(axis=self.axes, keepdims=True) + self.eps)
        xhat = d * invstd
        gb = gy.sum(axis=self.axes, keepdims=True)
        gw = (gy * xhat).sum(axis=self.axes, keepdims=True)
        out = []
        if need[0]:
            scale = invstd * ops.reshape(w, self.shape) if w is not None else invstd
            out.append((gy - gb * (1.0 / n) - xhat * (gw * (1.0 / n))) * scale)
        else:
            out.append(None)
        if self.has_weight:
            out.append(ops.reshape(gw, w.shape) if need[1] else None)
        if self.has_bias:
            out.append(ops.reshape(gb, self.inputs[-1].shape) if need[-1] else None)
        return tuple(out)

    def _backward_arrays(self, gy, x, w, n, need):
        """The same gradients on arrays, when no graph is built, in fewer full-size passes:
        ∂x = s·gy + a·(x − μ) + b with per-channel s = γ/√(σ² + ε), a = −s·∂γ/(n√(σ² + ε)),
        b = −s·∂β/n. (x − μ is formed rather than expanded: Σ gy·x − μ Σ gy would cancel
        catastrophically in float32 when |μ| ≫ σ.) gy is read in x's layout (a convolution's
        output gradient arrives channels-last, like x); otherwise the one copy is made here."""
        xp = backend.get_array_module(gy)
        invstd = self.invstd
        r = _channels_last(x)
        g = xp.moveaxis(gy, 1, -1)
        if r.ndim == 2:
            g = g.reshape(r.shape)  # a view when gy is laid out like x, else the one copy
            d, gb, gw = _bn_backward_sums(r, g, self.mean)
        else:
            d = r - self.mean
            gb = g.sum(axis=tuple(range(g.ndim - 1)))
            gw = _channel_dot(g, d)
        gw = gw * invstd
        out = []
        if need[0]:
            s = invstd * w if w is not None else invstd
            a, b = -s * invstd * gw * (1.0 / n), -s * gb * (1.0 / n)
            if r.ndim == 2:
                _bn_backward_dx(d, g, s, a, b)
            else:
                d *= a
                d += g * s
                d += b
            out.append(Tensor(_from_channels_last(d, x.shape)))
        else:
            out.append(None)
        if self.has_weight:
            out.append(Tensor(gw.reshape(w.shape)) if need[1] else None)
        if self.has_bias:
            out.append(Tensor(gb.reshape(self.inputs[-1].shape)) if need[-1] else None)
        return tuple(out)


# BatchNorm's passes over x seen as rows (M, C) run in pieces of rows, several threads at
# once (backend.parallel_for). Each piece does all of a pass's work while its rows are in
# cache, and per-channel sums add the pieces' partial sums in order, so the result is the
# same with any number of threads.
_BN_PIECE_BYTES = 1 << 20


def _bn_rows(r):
    return max(1, _BN_PIECE_BYTES // max(r.shape[1] * r.itemsize, 1))


def _sum_in_order(parts):
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    return total


def _bn_forward_rows(r, n, eps, weight, bias):
    """x̂·γ + β on rows (M, C): μ, then x − μ with Σ(x − μ)², then the scale and shift; also
    μ, σ² and 1/√(σ² + ε), which the backward reuses."""
    xp = backend.get_array_module(r)
    chunk = _bn_rows(r)
    mean = _sum_in_order(backend.parallel_for(xp, r.shape[0], lambda a, b: r[a:b].sum(axis=0), chunk)) / n
    d = xp.empty_like(r)

    def centre(a, b):
        da = d[a:b]
        xp.subtract(r[a:b], mean, out=da)
        return _channel_dot(da, da)

    var = _sum_in_order(backend.parallel_for(xp, r.shape[0], centre, chunk)) / n
    invstd = 1.0 / xp.sqrt(var + eps)
    scale = invstd if weight is None else invstd * weight

    def affine(a, b):
        d[a:b] *= scale
        if bias is not None:
            d[a:b] += bias

    backend.parallel_for(xp, r.shape[0], affine, chunk)
    return d, mean, var, invstd


def _bn_backward_sums(r, g, mean):
    """x − μ, Σ gy and Σ gy·(x − μ) per channel, in one pass over rows."""
    xp = backend.get_array_module(r)
    d = xp.empty_like(r)

    def piece(a, b):
        da = d[a:b]
        xp.subtract(r[a:b], mean, out=da)
        return g[a:b].sum(axis=0), _channel_dot(g[a:b], da)

    parts = backend.parallel_for(xp, r.shape[0], piece, _bn_rows(r))
    return d, _sum_in_order([p[0] for p in parts]), _sum_in_order([p[1] for p in parts])


def _bn_backward_dx(d, g, s, a, b):
    """d ← a·d + s·gy + b in place, in one pass over rows."""
    xp = backend.get_array_module(d)

    def piece(lo, hi):
        dp = d[lo:hi]
        dp *= a
        dp += g[lo:hi] * s
        dp += b

    backend.parallel_for(xp, d.shape[0], piece, _bn_rows(d))


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,  # noqa: A002
               momentum=0.1, eps=1e-5):
    """Batch normalisation over every axis but 1, ``torch.nn.functional.batch_norm``.

    training:  y = (x − μ_B) / √(σ²_B + ε) · γ + β with the batch mean and the *biased*
               batch variance σ²_B = mean((x − μ_B)²); the running statistics (when given)
               are updated in place with the *unbiased* variance, as PyTorch:
               r_μ ← (1 − m) r_μ + m μ_B,  r_σ² ← (1 − m) r_σ² + m σ²_B · n/(n − 1).
    eval:      y = (x − r_μ) / √(r_σ² + ε) · γ + β.

    Training mode is one fused Function whose backward is written with Tensor operations; eval
    mode is Tensor operations. Both are differentiable to any order.
    """
    x = _floating(input, "input")
    if x.ndim < 2:
        raise ValueError(f"batch_norm: input must have at least 2 dimensions (N, C, …), got shape {x.shape}")
    c = x.shape[1]
    rm = _stat_array(running_mean, "running_mean", c)
    rv = _stat_array(running_var, "running_var", c)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        weight = as_tensor(weight)
        _check_same(x, weight, "weight")
        if weight.shape != (c,):
            raise ValueError(f"batch_norm: weight must have shape ({c},), got {weight.shape}")
    if bias is not None:
        bias = as_tensor(bias)
        _check_same(x, bias, "bias")
        if bias.shape != (c,):
            raise ValueError(f"batch_norm: bias must have shape ({c},), got {bias.shape}")
    x, weight, bias = _promote(x, weight, bias)
    if training:
        n = x.size // c if c else 0
        if n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input of shape {x.shape}")
        fn = _BatchNormTrain(axes, shape, eps, weight is not None, bias is not None)
        y = fn(x, *[t for t in (weight, bias) if t is not None])
        m = float(momentum)
        if rm is not None:
            rm *= 1.0 - m
            rm += m * fn.mean.reshape(c).astype(rm.dtype, copy=False)
        if rv is not None:
            rv *= 1.0 - m
            rv += (m * n / (n - 1)) * fn.var.reshape(c).astype(rv.dtype, copy=False)
        return y
    if rm is None or rv is None:
        raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
    xp = x.xp
    d = x - Tensor(rm.reshape(shape).astype(x.dtype, copy=False))
    inv = Tensor((1.0 / xp.sqrt(rv.astype(x.dtype) + eps)).reshape(shape))
    scale = inv if weight is None else inv * ops.reshape(weight, shape)  # (1, C, …): one small product
    y = d * scale
    return y if bias is None else y + ops.reshape(bias, shape)
