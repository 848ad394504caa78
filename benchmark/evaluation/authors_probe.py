"""The LDIFS authors' linear probe (Mukhoti et al., TMLR 2024; omegafragger/ldifs_code).

Their protocol: an ``nn.Linear`` on the l2-normalised image embedding, trained full batch
by AdamW (torch's default weight decay 0.01, applied to weight and bias) for 1000 steps,
the learning rate chosen in {0.01, 0.05, 0.1, 0.5, 1} by accuracy on the validation split,
then refitted with that rate on the full train split (train + validation) and scored on
the test split. Here the candidate rates are fitted at once as one batched problem
([L, K, D] weights, one hand-written AdamW step for all of them, analytic cross-entropy
gradient): the same arithmetic as L separate ``torch.optim.AdamW`` runs (tested), at the
cost of one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

AUTHORS_LRS = (0.01, 0.05, 0.1, 0.5, 1.0)
AUTHORS_STEPS = 1000
ADAMW_WEIGHT_DECAY = 0.01  # torch.optim.AdamW's default, which the authors keep
BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.AdamW's defaults


def init_linear(dim: int, num_classes: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``nn.Linear``'s default initialisation, U(-1/sqrt(D), 1/sqrt(D)) for weight and bias,
    drawn from a seeded generator so that a probe is a function of its features only."""
    g = torch.Generator().manual_seed(seed)
    bound = dim**-0.5
    w = (torch.rand(num_classes, dim, generator=g) * 2 - 1) * bound
    b = (torch.rand(num_classes, generator=g) * 2 - 1) * bound
    return w.to(device), b.to(device)


def adamw_fit(
    feats: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    lrs: Sequence[float],
    steps: int = AUTHORS_STEPS,
    weight_decay: float = ADAMW_WEIGHT_DECAY,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-batch AdamW on mean cross-entropy, one problem per lr: weights [L, K, D], biases [L, K].

    Every problem starts from the same ``init_linear``; the update is torch's AdamW
    (decoupled decay ``p *= 1 - lr*wd``, bias-corrected moments, eps outside the root)."""
    x = feats.float()
    n, dim = x.shape
    w0, b0 = init_linear(dim, num_classes, x.device)
    lr = torch.tensor(list(lrs), dtype=torch.float32, device=x.device)
    w = w0.expand(len(lrs), -1, -1).clone()
    b = b0.expand(len(lrs), -1).clone()
    m_w, v_w, m_b, v_b = (torch.zeros_like(t) for t in (w, w, b, b))
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(x)
    for step in range(1, steps + 1):
        logits = torch.einsum("nd,lkd->lnk", x, w) + b[:, None, :]
        err = (torch.softmax(logits, dim=-1) - onehot) / n  # d(mean CE)/d(logits)
        _adamw_step(w, torch.einsum("lnk,nd->lkd", err, x), m_w, v_w, lr.view(-1, 1, 1), step, weight_decay)
        _adamw_step(b, err.sum(1), m_b, v_b, lr.view(-1, 1), step, weight_decay)
    return w, b


def _adamw_step(
    p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, lr: torch.Tensor, step: int, wd: float
) -> None:
    b1, b2 = BETAS
    p.mul_(1 - lr * wd)
    m.mul_(b1).add_(g, alpha=1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (v.sqrt() / (1 - b2**step) ** 0.5).add_(EPS)
    p.sub_(lr / (1 - b1**step) * m / denom)


def fit_authors_probe(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    lrs: Sequence[float] = AUTHORS_LRS,
    steps: int = AUTHORS_STEPS,
    refit: bool = True,
) -> tuple[nn.Linear, float]:
    """(head, chosen lr): select the lr on ``val`` (features, labels), refit on train + val.

    Ties go to the smaller lr (the first in ``lrs``). Only ``train`` and ``val`` are seen:
    the test split cannot influence the choice. ``refit=False`` keeps the head fitted on
    ``train`` at the chosen lr: the authors' LP-init head (their ``heads.py``, called on the
    90% split, so its "full train split" is that split), which never fits a validation row."""
    w, b = adamw_fit(*train, num_classes, lrs, steps)
    val_x, val_y = val[0].float(), val[1]
    hits = ((torch.einsum("nd,lkd->lnk", val_x, w) + b[:, None, :]).argmax(-1) == val_y).sum(1)
    best = int(torch.argmax((hits == hits.max()).int()))  # first of the best
    w, b = w[best], b[best]
    if refit:
        x, y = torch.cat([train[0].float(), val_x]), torch.cat([train[1], val_y])
        w, b = (t[0] for t in adamw_fit(x, y, num_classes, [lrs[best]], steps))
    head = nn.Linear(w.shape[1], num_classes).to(w.device)
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
    return head.requires_grad_(False), float(lrs[best])
