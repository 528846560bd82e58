"""Check a PyTorch BYOL training step against npjem's, step for step, and find a planted bug.

"My" BYOL below is written the way a PyTorch user would write it (its own module names, its own
training step). ``crosscheck.compare_method`` loads its weights into npjem's ``BYOL``, runs ten
steps of both on the same float64 views, and compares loss, parameters, BatchNorm buffers and the
target network after every step. The first run has a bug that is easy to write and hard to see:
the target's moving average is taken *before* the optimizer step. The report names the step and
the tensor where the two part, and the convention that explains it. The second run, with the bug
fixed, agrees to ~1e-15.

    python examples/check_my_pytorch_byol.py          (needs torch: pip install torch==2.13.0)
"""
import copy
import math

import torch
from torch import nn

import npjem
import npjem.methods
import npjem.optim
from npjem import crosscheck
from npjem.nn.models import ConvNet

WIDTHS, HIDDEN, OUT, BASE_MOMENTUM, LR = (4, 8), 16, 8, 0.99, 0.05


# ------------------------------------------------------------------ "my" PyTorch BYOL
class Encoder(nn.Module):
    def __init__(self, widths=WIDTHS):
        super().__init__()
        layers, c = [], 3
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, stride=1 if i == 0 else 2, padding=1, bias=False), nn.BatchNorm2d(w),
                       nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x).mean(dim=(2, 3))


def mlp(i, h, o):
    return nn.Sequential(nn.Linear(i, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, o))


class MyBYOL(nn.Module):
    def __init__(self):
        super().__init__()
        self.online = nn.ModuleDict({"encoder": Encoder(), "projector": mlp(WIDTHS[-1], HIDDEN, OUT)})
        self.predictor = mlp(OUT, HIDDEN, OUT)
        self.target = copy.deepcopy(self.online)
        for p in self.target.parameters():
            p.requires_grad = False

    def project(self, net, x):
        return net["projector"](net["encoder"](x))


def regression(p, z):
    return 2 - 2 * nn.functional.cosine_similarity(p, z, dim=-1)


def make_step(model, bug=None, weight_decay=0.0):
    """One BYOL step of "my" code. ``bug``: None, "ema_before_step", "momentum_per_epoch" or
    "stopgrad_wrong_branch"; ``weight_decay`` applies to every parameter."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR, momentum=0.9,
                          weight_decay=weight_decay)

    def ema(tau):
        with torch.no_grad():
            for t, o in zip(model.target.parameters(), model.online.parameters()):
                t.mul_(tau).add_(o, alpha=1 - tau)

    def step(views, k, total):
        x1, x2 = views
        p1 = model.predictor(model.project(model.online, x1))
        p2 = model.predictor(model.project(model.online, x2))
        with torch.no_grad():
            t1, t2 = model.project(model.target, x1), model.project(model.target, x2)
        if bug == "stopgrad_wrong_branch":
            loss = (regression(p1, t2) + regression(p2.detach(), t1)).mean()
        else:
            loss = (regression(p1, t2) + regression(p2, t1)).mean()
        # BYOL's schedule: tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2, per step
        tau = 1 - (1 - BASE_MOMENTUM) * (math.cos(math.pi * k / total) + 1) / 2
        if bug == "momentum_per_epoch":
            tau = BASE_MOMENTUM  # one epoch here: a per-epoch schedule never moves
        if bug == "ema_before_step":
            ema(tau)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if bug != "ema_before_step":
            ema(tau)
        return loss

    return step


def key_map(name):
    """My state-dict names → npjem's BYOL names."""
    for mine, theirs in (("online.encoder.", "backbone."), ("online.projector.", "projector.layers."),
                         ("predictor.", "predictor.layers."), ("target.encoder.", "backbone_target."),
                         ("target.projector.", "projector_target.layers.")):
        if name.startswith(mine):
            return theirs + name[len(mine):]
    return name


def npjem_byol():
    backbone = ConvNet(widths=WIDTHS, dtype="float64", generator=0)
    return npjem.methods.BYOL(backbone, hidden_dim=HIDDEN, out_dim=OUT, momentum=BASE_MOMENTUM, generator=1).double()


def check(bug=None, steps=10, verbose=True):
    torch.manual_seed(0)
    model = MyBYOL()
    return crosscheck.compare_method(
        make_step(model.double(), bug), "byol", their_model=model, npjem_method=npjem_byol(),
        optimizer=lambda params: npjem.optim.SGD(params, lr=LR, momentum=0.9), key_map=key_map, steps=steps,
        verbose=verbose)


if __name__ == "__main__":
    print("--- my BYOL, as first written (the target's EMA before the optimizer step):")
    check(bug="ema_before_step")
    print("\n--- fixed (the EMA after the optimizer step, as BYOL does):")
    report = check()
    print(f"\nworst relative difference over 10 steps: {report.worst:.1e}")
