"""The math of npjem.losses.distillation on values a reader can work out by hand."""
import numpy as np

from npjem.losses import byol_loss, negative_cosine, simsiam_loss


def _clamped_cos(a, b, eps):
    """cos with each norm clamped at eps, as torch.nn.functional.cosine_similarity."""
    na = np.maximum(np.linalg.norm(a, axis=1), eps)
    nb = np.maximum(np.linalg.norm(b, axis=1), eps)
    return (a * b).sum(axis=1) / (na * nb)


def test_the_norm_clamp_applies_to_both_directions_of_simsiam():
    rng = np.random.default_rng(0)
    p1, p2, z1, z2 = (rng.standard_normal((3, 4)) for _ in range(4))
    # one prediction of each view with a norm below the clamp: cos is then p·z / (eps ‖z‖)
    p1[0] *= 1e-9 / np.linalg.norm(p1[0])
    p2[1] *= 1e-9 / np.linalg.norm(p2[1])
    eps = 1e-7
    want = -0.5 * _clamped_cos(p1, z2, eps).mean() - 0.5 * _clamped_cos(p2, z1, eps).mean()
    np.testing.assert_allclose(simsiam_loss(p1, p2, z1, z2, eps=eps).item(), want, rtol=1e-12)
    np.testing.assert_allclose(negative_cosine(p2, z1, eps=eps).item(), -_clamped_cos(p2, z1, eps).mean(),
                               rtol=1e-12)


def test_byol_normalises_with_the_clamp_in_both_directions():
    # ℓ = ‖p/max(‖p‖, eps) − z/max(‖z‖, eps)‖², summed over the two directions, batch mean
    rng = np.random.default_rng(1)
    p1, p2, z1, z2 = (rng.standard_normal((3, 4)) for _ in range(4))
    p2[2] *= 1e-8 / np.linalg.norm(p2[2])   # a prediction and a target shorter than eps
    z2[1] *= 3e-7 / np.linalg.norm(z2[1])
    eps = 1e-6

    def unit(a):
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), eps)

    def ell(p, z):
        return ((unit(p) - unit(z)) ** 2).sum(axis=1)

    want = (ell(p1, z2) + ell(p2, z1)).mean()
    np.testing.assert_allclose(byol_loss((p1, p2), (z1, z2), eps=eps).item(), want, rtol=1e-12)
    np.testing.assert_allclose(byol_loss((p1, p2), (z1, z2), directions="mean", eps=eps).item(), want / 2,
                               rtol=1e-12)
