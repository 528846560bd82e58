"""``MultiheadAttention``, as ``torch.nn.MultiheadAttention`` with ``batch_first=True``.

With E = ``embed_dim``, h = ``num_heads`` and d = E/h, for a query sequence Q (N, L, E) and
key/value sequences K, V (N, S, E)::

    [W_q; W_k; W_v] = in_proj_weight (3E, E),   [b_q; b_k; b_v] = in_proj_bias (3E,)
    q = Q W_qᵀ + b_q,  k = K W_kᵀ + b_k,  v = V W_vᵀ + b_v      split into h heads of width d
    A_i = softmax(q_i k_iᵀ / √d + M)                              (N, L, S) per head i
    head_i = A_i v_i,   out = concat_i(head_i) W_oᵀ + b_o         W_o = out_proj.weight (E, E)

M is the additive mask: −∞ where a boolean ``attn_mask`` or ``key_padding_mask`` is True (that
query may not look at that key), or a float ``attn_mask`` added as is.

Every step is a Tensor operation (linear maps, reshapes, batched matmul, ``where`` and the
max-subtracted softmax of ``npjem.autograd.functional``), so the layer is differentiable to any
order by construction. Parameter names and initialisation follow PyTorch, so its state_dict
loads as is: ``in_proj_weight`` ~ Xavier-uniform, ``in_proj_bias`` = 0, ``out_proj`` a Linear
with its default init and a zero bias.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .. import random as nrandom
from ..autograd import functional as AF
from ..autograd import ops
from ..autograd.tensor import Tensor, as_tensor
from . import init
from .._checks import check_int
from ._utils import empty_parameter
from .linear import Dropout, Linear
from .module import Module

__all__ = ["MultiheadAttention"]


def _mask_array(mask, name, xp):
    if mask is None:
        return None
    arr = mask.data if isinstance(mask, Tensor) else mask
    if not backend.is_array(arr):
        arr = np.asarray(arr)  # host: a mask given as a list
    if arr.dtype.kind not in "bf":
        raise TypeError(f"{name} must be a boolean or floating array, got dtype {arr.dtype}")
    return xp.asarray(arr)


class MultiheadAttention(Module):
    """Multi-head scaled dot-product attention (Vaswani et al., 2017), PyTorch's parameters.

    Args:
        embed_dim: E, the width of queries, keys, values and the output.
        num_heads: h; E must be divisible by h (each head has width E/h).
        dropout: dropout probability on the attention weights (training mode only).
        bias: add ``in_proj_bias`` and ``out_proj.bias``.
        batch_first: True (the default here, and the only layout npjem's models use): inputs
            are (N, L, E). False accepts PyTorch's (L, N, E) layout.
        generator: seed or Generator for the initialisation and the dropout masks.

    ``forward(query, key=None, value=None, key_padding_mask=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False)`` returns
    ``(attn_output, attn_weights)`` as PyTorch; ``key`` defaults to ``query`` and ``value`` to
    ``key`` (self-attention). ``attn_weights`` is (N, L, S) averaged over heads, (N, h, L, S)
    with ``average_attn_weights=False``, or None with ``need_weights=False``.
    ``key_padding_mask`` (N, S): True marks keys to ignore (a float mask is added).
    ``attn_mask`` (L, S) or (N·h, L, S): True marks forbidden pairs (a float mask is added).
    ``is_causal=True`` without ``attn_mask`` forbids every key after its query (j > i).
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=True,
                 device=None, dtype=None, generator=None):
        super().__init__()
        self.embed_dim = check_int(embed_dim, "embed_dim")
        self.num_heads = check_int(num_heads, "num_heads")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout!r}")
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = float(dropout)
        self.batch_first = bool(batch_first)
        e = self.embed_dim
        self.in_proj_weight = empty_parameter((3 * e, e), device, dtype)
        if bias:
            self.in_proj_bias = empty_parameter((3 * e,), device, dtype)
        else:
            self.register_parameter("in_proj_bias", None)
        g = nrandom.as_generator(generator, self.in_proj_weight.device)
        self.out_proj = Linear(e, e, bias=bias, device=device, dtype=dtype, generator=g)
        # A Dropout child (no parameters, so state_dict stays PyTorch's) keeps one generator per
        # device, so the masks follow the module through ``.to("cuda")``.
        self.attn_drop = Dropout(self.dropout, generator=g)
        self.reset_parameters(g)

    def reset_parameters(self, generator=None):
        """PyTorch's ``_reset_parameters``: Xavier-uniform in_proj_weight, zero biases."""
        g = nrandom.as_generator(generator, self.in_proj_weight.device)
        init.xavier_uniform_(self.in_proj_weight, generator=g)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
        if self.out_proj.bias is not None:
            init.zeros_(self.out_proj.bias)

    def _project(self, x, i):
        """x W_iᵀ + b_i for the i-th third (0: q, 1: k, 2: v) of the packed projection."""
        e = self.embed_dim
        w = self.in_proj_weight[i * e:(i + 1) * e]
        b = None if self.in_proj_bias is None else self.in_proj_bias[i * e:(i + 1) * e]
        return AF.linear(x, w, b)

    def forward(self, query, key=None, value=None, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        q_in = as_tensor(query)
        k_in = q_in if key is None else as_tensor(key, q_in)
        v_in = k_in if value is None else as_tensor(value, q_in)
        if q_in.ndim not in (2, 3):
            raise ValueError(f"MultiheadAttention: query must be (N, L, E) or unbatched (L, E), got shape "
                             f"{tuple(q_in.shape)}")
        if k_in.ndim != q_in.ndim or v_in.ndim != q_in.ndim:
            raise ValueError(f"MultiheadAttention: query, key and value must have the same number of "
                             f"dimensions, got shapes {tuple(q_in.shape)}, {tuple(k_in.shape)}, {tuple(v_in.shape)}")
        unbatched = q_in.ndim == 2
        if unbatched:
            q_in, k_in, v_in = (ops.unsqueeze(t, 0) for t in (q_in, k_in, v_in))
        elif not self.batch_first:
            q_in, k_in, v_in = (ops.transpose(t, (1, 0, 2)) for t in (q_in, k_in, v_in))
        n, L, e = q_in.shape
        s = k_in.shape[1]
        if e != self.embed_dim:
            raise ValueError(f"MultiheadAttention: query has {e} features, expected embed_dim={self.embed_dim}")
        if k_in.shape[0] != n or v_in.shape[0] != n or k_in.shape[2] != e or v_in.shape[2] != e:
            raise ValueError(f"MultiheadAttention: key {tuple(k_in.shape)} and value {tuple(v_in.shape)} must be "
                             f"(N={n}, S, E={e})")
        if v_in.shape[1] != s:
            raise ValueError(f"MultiheadAttention: key and value must have the same length, got {s} and "
                             f"{v_in.shape[1]}")
        h, d = self.num_heads, self.head_dim
        xp = q_in.xp

        if k_in is q_in and v_in is q_in:
            # Self-attention: one GEMM with the packed (3E, E) weight, then split.
            qkv = AF.linear(q_in, self.in_proj_weight, self.in_proj_bias)
            qkv = ops.transpose(ops.reshape(qkv, (n, L, 3, h, d)), (2, 0, 3, 1, 4))  # (3, N, h, L, d)
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:
            q = ops.transpose(ops.reshape(self._project(q_in, 0), (n, L, h, d)), (0, 2, 1, 3))
            k = ops.transpose(ops.reshape(self._project(k_in, 1), (n, s, h, d)), (0, 2, 1, 3))
            v = ops.transpose(ops.reshape(self._project(v_in, 2), (n, s, h, d)), (0, 2, 1, 3))

        scores = ops.matmul(q * (1.0 / math.sqrt(d)), ops.swapaxes(k, -1, -2))  # (N, h, L, S)
        scores = self._apply_masks(scores, attn_mask, key_padding_mask, is_causal, n, L, s, xp)
        attn = self.attn_drop(AF.softmax(scores, axis=-1))
        out = ops.matmul(attn, v)                                               # (N, h, L, d)
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (n, L, e))
        out = self.out_proj(out)

        weights = None
        if need_weights:
            weights = attn.mean(axis=1) if average_attn_weights else attn
            if unbatched:
                weights = ops.squeeze(weights, 0)
        if unbatched:
            out = ops.squeeze(out, 0)
        elif not self.batch_first:
            out = ops.transpose(out, (1, 0, 2))
        return out, weights

    def _apply_masks(self, scores, attn_mask, key_padding_mask, is_causal, n, L, s, xp):
        h = self.num_heads
        am = _mask_array(attn_mask, "attn_mask", xp)
        if am is None and is_causal:
            am = xp.triu(xp.ones((L, s), dtype=bool), k=1)
        if am is not None:
            if am.shape == (L, s):
                am = am.reshape(1, 1, L, s)
            elif am.shape == (n * h, L, s):
                am = am.reshape(n, h, L, s)
            else:
                raise ValueError(f"attn_mask must have shape (L, S) = {(L, s)} or (N*num_heads, L, S) = "
                                 f"{(n * h, L, s)}, got {tuple(am.shape)}")
            scores = self._add_mask(scores, am)
        kpm = _mask_array(key_padding_mask, "key_padding_mask", xp)
        if kpm is not None:
            if kpm.shape != (n, s):
                raise ValueError(f"key_padding_mask must have shape (N, S) = {(n, s)}, got {tuple(kpm.shape)}")
            scores = self._add_mask(scores, kpm.reshape(n, 1, 1, s))
        return scores

    @staticmethod
    def _add_mask(scores, mask):
        if mask.dtype == bool:
            # −inf logits get softmax weight exactly 0; ``where`` passes no gradient to them.
            return ops.where(mask, -np.inf, scores)
        return scores + Tensor(mask.astype(scores.dtype, copy=False))

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
                f"bias={self.in_proj_bias is not None}, batch_first={self.batch_first}")
