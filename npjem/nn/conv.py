"""``Conv2d`` and ``ConvTranspose2d`` (NCHW, PyTorch's arguments, parameter shapes and init)."""
from __future__ import annotations


from . import functional as F
from . import init
from .._checks import check_int
from ._utils import empty_parameter, pair
from .module import Module

__all__ = ["Conv2d", "ConvTranspose2d"]


class _ConvNd(Module):
    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                 bias, padding_mode, output_padding, device, dtype, generator):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.out_channels = check_int(out_channels, "out_channels")
        self.groups = check_int(groups, "groups")
        if self.in_channels % self.groups:
            raise ValueError(f"in_channels={in_channels} must be divisible by groups={groups}")
        if self.out_channels % self.groups:
            raise ValueError(f"out_channels={out_channels} must be divisible by groups={groups}")
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")
        self.output_padding = pair(output_padding, "output_padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1:
            raise ValueError(f"kernel_size, stride and dilation must be >= 1, got {self.kernel_size}, "
                             f"{self.stride}, {self.dilation}")
        if isinstance(padding, str):
            if padding not in ("same", "valid") or self.transposed:
                raise ValueError(f"padding must be an int or a pair{'' if self.transposed else ', valid or same'}, "
                                 f"got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
            self.padding = padding
        else:
            self.padding = pair(padding, "padding")
            if min(self.padding) < 0:
                raise ValueError(f"padding must be non-negative, got {self.padding}")
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros' (the only one implemented), got {padding_mode!r}")
        self.padding_mode = padding_mode
        if self.transposed:
            shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        else:
            shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = empty_parameter(shape, device, dtype)
        if bias:
            self.bias = empty_parameter((self.out_channels,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        """W ~ kaiming_uniform(a=√5) = U(±1/√fan_in), b ~ U(±1/√fan_in), fan_in = weight.shape[1]·kh·kw."""
        init.reset_weight_and_bias_(self.weight, self.bias, generator)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation) of (N, C_in, H, W) into (N, C_out, H_out, W_out).

    H_out = ⌊(H + 2·padding − dilation·(k − 1) − 1) / stride⌋ + 1. Weight (C_out, C_in/groups,
    kh, kw), bias (C_out,). im2col + one GEMM; twice differentiable (see ``nn.functional``).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None, generator=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, 0, device, dtype, generator)

    def forward(self, input):  # noqa: A002
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    """Transposed convolution (the adjoint of Conv2d in its input), weight (C_in, C_out/groups, kh, kw).

    H_out = (H − 1)·stride − 2·padding + dilation·(k − 1) + output_padding + 1.
    """

    transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None,
                 generator=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device, dtype, generator)

    def forward(self, input, output_size=None):  # noqa: A002
        """``output_size`` (the last two entries are used) picks the output_padding that gives it,
        as PyTorch; it must be reachable with 0 <= output_padding < stride."""
        op = self.output_padding
        if output_size is not None:
            want = tuple(int(v) for v in tuple(output_size)[-2:])
            base = [(input.shape[-2 + i] - 1) * self.stride[i] - 2 * self.padding[i]
                    + self.dilation[i] * (self.kernel_size[i] - 1) + 1 for i in range(2)]
            op = tuple(w - b for w, b in zip(want, base))
            if any(not 0 <= o < s for o, s in zip(op, self.stride)):
                raise ValueError(f"output_size {want} is not reachable: sizes from {tuple(base)} to "
                                 f"{tuple(b + s - 1 for b, s in zip(base, self.stride))} are")
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  op, self.groups, self.dilation)
