"""Manifold-constrained hyper-connections (v4-architecture.md §4.2): n residual streams,
HCPre (Sinkhorn-normalized mixing down to one stream), HCPost (back to n), HCHead."""
import numpy as np


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def hc_mixes(X, fn, eps):
    """[O-MHC-1] mu = (x . F^T) * rsqrt(mean_{n d}(x^2) + eps), x = the n streams concatenated
    (f32 GEMM on the unnormalized x, then scaled).  X: [B, S, n, d]; fn: [mix, n d]."""
    B, S, n, d = X.shape
    x = X.reshape(B, S, n * d)
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return (x @ fn.T) * r


def sinkhorn_split(mu, scale, base, n, iters, eps):
    """[O-MHC-2] pre_j = sigma(mu_j a0 + b_j) + eps; post_j = 2 sigma(mu_(n+j) a1 + b_(n+j));
    C = mu_(2n..) a2 + b (n x n, row j, column k); C <- rowsoftmax(C) + eps; column-normalize
    C <- C / (colsum + eps); then iters-1 times row- then column-normalize (each + eps)."""
    pre = _sigmoid(mu[..., :n] * scale[0] + base[:n]) + eps
    post = 2.0 * _sigmoid(mu[..., n:2 * n] * scale[1] + base[n:2 * n])
    C = (mu[..., 2 * n:] * scale[2] + base[2 * n:]).reshape(mu.shape[:-1] + (n, n))
    C = np.exp(C - C.max(axis=-1, keepdims=True))
    C = C / C.sum(axis=-1, keepdims=True) + eps
    C = C / (C.sum(axis=-2, keepdims=True) + eps)
    for _ in range(iters - 1):
        C = C / (C.sum(axis=-1, keepdims=True) + eps)
        C = C / (C.sum(axis=-2, keepdims=True) + eps)
    return pre, post, C


def hc_pre(X, fn, scale, base, cfg, num):
    """[O-MHC-3] a = bf16(sum_j pre_j x_j); returns (a [B, S, d], post [B, S, n], comb [B, S, n, n])."""
    n = X.shape[2]
    mu = hc_mixes(X, fn, cfg["norm_eps"])
    pre, post, comb = sinkhorn_split(mu, scale, base, n, cfg["hc_sinkhorn_iters"], cfg["hc_eps"])
    return num.bf16(np.einsum("bsj,bsjd->bsd", pre, X)), post, comb


def hc_post(o, R, post, comb, num):
    """[O-MHC-4] new stream k = bf16(post_k o + sum_j C[j, k] R_j) (f32, one rounding)."""
    return num.bf16(post[..., None] * o[:, :, None, :] + np.einsum("bsjk,bsjd->bskd", comb, R))


def hc_head(X, fn, scale, base, cfg, num):
    """[O-MHC-5] w_j = sigma(mu_j s + b_j) + eps (not normalized); h = bf16(sum_j w_j x_j)."""
    mu = hc_mixes(X, fn, cfg["norm_eps"])
    wgt = _sigmoid(mu * scale[0] + base) + cfg["hc_eps"]
    return num.bf16(np.einsum("bsj,bsjd->bsd", wgt, X))
