"""The pair of an npjem input and a PyTorch input, and the float64 comparison of a loss's value
and gradients, shared by the losses' PyTorch cross-checks."""
import numpy as np
import torch

import npjem
from npjem import Tensor

TOL = dict(rtol=1e-10, atol=1e-10)


def both(arr):
    return Tensor(arr.copy(), requires_grad=True), torch.tensor(arr, dtype=torch.float64, requires_grad=True)


def compare(ours, theirs, our_inputs, their_inputs):
    np.testing.assert_allclose(ours.item(), theirs.item(), **TOL)
    for go, gt in zip(npjem.grad(ours, our_inputs), torch.autograd.grad(theirs, their_inputs)):
        np.testing.assert_allclose(go.numpy(), gt.numpy(), **TOL)
