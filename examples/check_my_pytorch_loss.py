"""Check your own PyTorch loss against npjem in float64: a buggy NT-Xent, caught, then fixed.

    pip install torch==2.13.0   # a CPU wheel is enough
    python examples/check_my_pytorch_loss.py

The first version below has two slips that are easy to make and hard to see in training
curves: the temperature divides the similarities twice in one direction, and the second view
is detached, so no gradient reaches it. ``npjem.crosscheck.compare`` evaluates both
implementations on the same float64 inputs, back-propagates the same random incoming gradient
and prints, for the value and every input's gradient, the worst element and its relative error.
"""
import sys

import torch
import torch.nn.functional as F

from npjem import crosscheck


def my_nt_xent_buggy(z1, z2, temperature=0.1):
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = z1.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool)
    labels = torch.arange(n)
    z2 = z2.detach()                                        # slip 1: a stop-gradient SimCLR lacks
    l12 = z1 @ z2.T / temperature
    l11 = (z1 @ z1.T / temperature).masked_fill(self_mask, float("-inf"))
    l21 = z2 @ z1.T / temperature / temperature              # slip 2: τ applied twice
    l22 = (z2 @ z2.T / temperature).masked_fill(self_mask, float("-inf"))
    return (F.cross_entropy(torch.cat([l12, l11], 1), labels)
            + F.cross_entropy(torch.cat([l21, l22], 1), labels))


def my_nt_xent_fixed(z1, z2, temperature=0.1):
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = z1.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool)
    labels = torch.arange(n)
    l12 = z1 @ z2.T / temperature
    l11 = (z1 @ z1.T / temperature).masked_fill(self_mask, float("-inf"))
    l21 = z2 @ z1.T / temperature
    l22 = (z2 @ z2.T / temperature).masked_fill(self_mask, float("-inf"))
    return (F.cross_entropy(torch.cat([l12, l11], 1), labels)
            + F.cross_entropy(torch.cat([l21, l22], 1), labels))


def main():
    print("The buggy version:\n")
    buggy = crosscheck.compare(my_nt_xent_buggy, "info_nce", shapes={"N": 8, "D": 16}, framework="torch")
    print(buggy, "\n")
    print("The fixed version:\n")
    fixed = crosscheck.compare(my_nt_xent_fixed, "info_nce", shapes={"N": 8, "D": 16}, framework="torch")
    print(fixed)
    # The same check on several seeds and batch sizes, as a test would run it:
    for seed in range(3):
        crosscheck.compare(my_nt_xent_fixed, "info_nce", seed=seed, shapes={"N": 4 + seed}).raise_if_failed()
    return 0 if (fixed.ok and not buggy.ok) else 1


if __name__ == "__main__":
    sys.exit(main())
