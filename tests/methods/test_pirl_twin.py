"""PIRL step for step against a PyTorch twin written from vissl's ``NCELossWithMemory``.

The twin follows facebookresearch/vissl ``vissl/losses/nce_loss.py`` (``NCELossWithMemory``,
``NCEAverage``, ``NCECriterion``, from lemniscate) and its ``pirl_jigsaw_4node_resnet.yaml``
(the trunk on the patches, then on the images; the heads): f = Linear on the
image's pooled features; g = a shared Linear per jigsaw tile, the tiles' outputs concatenated
in their (shuffled) order, then a Linear. The loss is vissl's loop over the embeddings in the
order [patches, image] with ``loss_weights`` [λ, 1 − λ]: each embedding L2-normalised, scored
against memory rows ``idx`` (column 0 the sample's own row), then either ``loss_type: nce``
(exp(score)/Z, Z = |D| · mean(exp(score)) estimated in the first call and frozen,
NCECriterion with its ε) or ``cross_entropy`` (InfoNCE, label 0). After the optimizer step the
memory rows of the batch move to normalize(μ m + (1 − μ) normalize(f)), μ = 0.5
(``update_mem_with_emb_index`` 1: the image embedding). The third configuration replaces
vissl's h by the course notes' (ch. 8-1, "Self-Supervised Results (MoCo, PIRL, SimCLR)")::

    h(v_I, v_{I^t}) = exp(s/τ) / ( exp(s/τ) + Σ_{I' ∈ D_N} exp(s(v_{I^t}, v_{I'})/τ) )

The negatives are npjem's draws fed to the twin (vissl draws them with its AliasMethod, per
sample and per term; npjem shares one draw): ``PIRL.negative_indices`` after every step.
Training uses the recipe's Adam (L2 decay 1e-6) under its warm-up and cosine decay.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from npjem import optim  # noqa: E402
from npjem.autograd import Tensor  # noqa: E402
from npjem.methods import PIRL  # noqa: E402
from npjem.nn import models  # noqa: E402

from _twins import (  # noqa: E402
    assert_snapshots_agree,
    load_from_npjem,
    method_key,
    recipe_warmup_steps,
    run_npjem,
    snapshot_npjem,
    snapshot_torch,
    torch_convnet,
    torch_warmup_cosine,
)

nn = torch.nn
STEPS = 10
WIDTHS = (4, 8)
OUT, TILE = 8, 4
GRID = 3
BATCH, DATASET, K = 8, 40, 16
MOMENTUM, LAM = 0.5, 0.5
VISSL_EPS = float(np.finfo("float32").eps)


class TwinPIRL(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch_convnet(widths=WIDTHS)
        self.head_f = nn.Linear(WIDTHS[-1], OUT)
        self.head_g = nn.Module()
        self.head_g.tile = nn.Linear(WIDTHS[-1], TILE)
        self.head_g.out = nn.Linear(GRID * GRID * TILE, OUT)

    def forward(self, image, tiles):
        """[g(v_{I^t}), f(v_I)]: vissl's ``INPUT_KEY_NAMES: [patches, images]``, the trunk on the
        patches first (which orders the BatchNorm running-statistics updates)."""
        n, t = tiles.shape[:2]
        h = self.backbone(tiles.reshape((n * t,) + tuple(tiles.shape[2:])))
        g = self.head_g.out(self.head_g.tile(h).reshape(n, t * TILE))
        f = self.head_f(self.backbone(image))
        return [g, f]


class TwinNCELossWithMemory:
    """vissl's NCELossWithMemory with one process, the memory as a float64 tensor."""

    def __init__(self, memory, loss_type, temperature, h="paper", eps=VISSL_EPS):
        self.memory = memory
        self.loss_type, self.T, self.h, self.eps = loss_type, temperature, h, eps
        self.Z = -1.0
        self.loss_weights = [LAM, 1.0 - LAM]

    def nce_average(self, embedding, idx):
        b, d = embedding.shape
        weight = torch.index_select(self.memory, 0, idx.view(-1)).detach().view(b, -1, d)
        out = torch.bmm(weight, embedding.view(b, d, 1)) / self.T
        if self.loss_type == "nce" and self.h == "paper":
            out = torch.exp(out)
            if self.Z < 0:
                with torch.no_grad():
                    self.Z = out.mean().item() * self.memory.shape[0]
            out = (out / self.Z).reshape(b, -1)
        return out

    def nce_criterion(self, x):
        """lemniscate's NCECriterion: eq. 5.1/5.2 with P_n = 1/|D| and ε in both denominators."""
        batch, k = x.shape[0], x.shape[1] - 1
        pn = 1.0 / self.memory.shape[0]
        pmt = x[:, 0]
        ln_pmt = torch.log(pmt / (pmt + k * pn + self.eps))
        pon_div = x[:, 1:] + k * pn + self.eps
        ln_pon = torch.log((k * pn) / pon_div)
        return -(ln_pmt.sum() + ln_pon.sum()) / batch

    def notes_criterion(self, out):
        """The notes' L_NCE with their h, the denominator summing over the negatives."""
        e = torch.exp(out.reshape(out.shape[0], -1))
        denominator = e[:, 1:].sum(dim=1, keepdim=True)
        h = e / (e + denominator)
        return (-torch.log(h[:, 0]) - torch.log(1 - h[:, 1:]).sum(dim=1)).mean()

    def __call__(self, outputs, idx):
        loss = 0
        for weight, output in zip(self.loss_weights, outputs):
            scores = self.nce_average(nn.functional.normalize(output, dim=1, p=2), idx)
            if self.loss_type == "cross_entropy":
                scores = scores.reshape(scores.shape[0], -1)
                loss = loss + weight * nn.functional.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long))
            elif self.h == "notes":
                loss = loss + weight * self.notes_criterion(scores)
            else:
                loss = loss + weight * self.nce_criterion(scores)
        return loss

    @torch.no_grad()
    def update_memory(self, embedding, y):
        embedding = nn.functional.normalize(embedding, dim=1, p=2)
        l_pos = torch.index_select(self.memory, 0, y.view(-1))
        l_pos.mul_(MOMENTUM)
        l_pos.add_(torch.mul(embedding, 1 - MOMENTUM))
        self.memory.index_copy_(0, y, nn.functional.normalize(l_pos, p=2, dim=1))


CONFIGS = {
    # npjem pretrain's PIRL: vissl's cross_entropy (InfoNCE) configuration, τ = 0.1.
    "recipe_infonce": dict(loss="infonce", temperature=0.1),
    # The paper's NCE with vissl's frozen Z and ε.
    "paper_nce": dict(loss="nce", temperature=0.07, nce_eps=VISSL_EPS),
    # The notes' h.
    "notes_nce": dict(loss="nce", temperature=0.07, h="notes"),
}


def draw_pirl_views(seed):
    rng = np.random.default_rng(seed)
    views = [(rng.standard_normal((BATCH, 3, 8, 8)), rng.standard_normal((BATCH, GRID * GRID, 3, 4, 4)))
             for _ in range(STEPS)]
    indices = [rng.choice(DATASET, BATCH, replace=False) for _ in range(STEPS)]
    return views, indices


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_pirl_takes_the_twins_steps(name):
    cfg = CONFIGS[name]
    views, indices = draw_pirl_views(3)
    method = PIRL(models.ConvNet(widths=WIDTHS, generator=0), DATASET, out_dim=OUT, tile_dim=TILE,
                  num_negatives=K, lam=LAM, memory_momentum=MOMENTUM, grid=GRID, generator=1, **cfg).double()
    method._memory_for(Tensor(np.zeros((1, OUT))))      # the bank now, so that the twin starts from it
    twin = load_from_npjem(TwinPIRL(), method, method_key)
    criterion = TwinNCELossWithMemory(torch.as_tensor(method.memory.data.copy()),
                                      "cross_entropy" if cfg["loss"] == "infonce" else "nce",
                                      cfg["temperature"], h=cfg.get("h", "paper"), eps=cfg.get("nce_eps", 0.0))

    negatives = []

    def npjem_snapshot(m, loss):
        negatives.append(np.asarray(m.negative_indices).copy())
        out = {"loss": np.float64(loss), "memory": m.memory.data.copy(), **snapshot_npjem(m, key_map=method_key)}
        if cfg["loss"] == "nce" and cfg.get("h", "paper") == "paper":
            out["nce_z"] = np.float64(m.nce_z)
        return out

    opt = optim.Adam(method.trainable_parameters(), lr=1e-2, weight_decay=1e-6)
    sched = optim.WarmupCosine(opt, total_steps=STEPS, warmup_steps=recipe_warmup_steps(STEPS))
    ours = run_npjem(method, views, opt, schedule=sched, snapshot=npjem_snapshot, indices=indices)

    twin.train()
    topt = torch.optim.Adam(twin.parameters(), lr=1e-2, weight_decay=1e-6)
    tsched = torch_warmup_cosine(topt, STEPS, recipe_warmup_steps(STEPS))
    theirs = []
    for (image, tiles), y, neg in zip(views, indices, negatives):
        y = torch.as_tensor(y)
        idx = torch.cat([y[:, None], torch.as_tensor(neg)[None, :].expand(BATCH, K)], dim=1)
        outputs = twin(torch.as_tensor(image), torch.as_tensor(tiles))
        loss = criterion(outputs, idx)
        topt.zero_grad()
        loss.backward()
        topt.step()
        tsched.step()
        criterion.update_memory(outputs[1].detach(), y)
        snap = {"loss": np.float64(loss.item()), "memory": criterion.memory.numpy().copy(), **snapshot_torch(twin)}
        if cfg["loss"] == "nce" and cfg.get("h", "paper") == "paper":
            snap["nce_z"] = np.float64(criterion.Z)
        theirs.append(snap)

    worst = assert_snapshots_agree(ours, theirs)
    for neg, y in zip(negatives, indices):     # the PIRL paper's D_N leaves the batch's own images out
        assert neg.shape == (K,) and not np.isin(neg, y).any()
    assert np.abs(ours[-1]["memory"] - ours[0]["memory"]).max() > 1e-3      # the bank moved
    print(f"\nPIRL ({name}): {STEPS} steps, worst relative difference {worst:.2e}")
