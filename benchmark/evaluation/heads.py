"""Classifier heads on l2-normalised image embeddings: zero-shot (text) and linear probe."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


@torch.no_grad()
def zeroshot_weights(
    model: nn.Module, tokenizer: Callable, prompts: list[list[str]], device: torch.device
) -> torch.Tensor:
    """Zero-shot head [K, D] as in CLIP (Radford et al. 2021) and the LDIFS authors:
    per-template text embeddings, normalised, averaged, renormalised, scaled by
    exp(logit_scale), no bias. Always from the original text tower."""
    rows = []
    for class_prompts in prompts:
        emb = F.normalize(model.encode_text(tokenizer(class_prompts).to(device)).float(), dim=-1)  # type: ignore[operator]
        rows.append(F.normalize(emb.mean(0), dim=-1))
    return torch.stack(rows) * model.logit_scale.exp().float()  # type: ignore[operator]


def fit_linear_probe(
    feats: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float = 1e-4, max_iter: int = 100
) -> nn.Linear:
    """Multinomial logistic regression on frozen features, fitted full-batch by L-BFGS.

    Deterministic and a few dozen milliseconds for thousands of examples; the authors'
    AdamW + lr sweep is a slower route to the same optimum of a convex problem.
    """
    feats = feats.float()
    # The features are unit-norm, so useful weights are large: fit on a standardised
    # copy (well conditioned for L-BFGS) and fold the scaling back into the head.
    mu, sd = feats.mean(0), feats.std(0).clamp_min(1e-6)
    z = (feats - mu) / sd
    head = nn.Linear(feats.shape[1], num_classes).to(feats.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(
        head.parameters(),
        lr=1,
        max_iter=max_iter,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(z), labels) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():  # W (x - mu)/sd + b  ==  (W/sd) x + (b - W mu/sd)
        w = head.weight / sd
        head.bias.sub_((w * mu).sum(1))
        head.weight.copy_(w)
    return head.requires_grad_(False)


class ShiftedHead(nn.Module):
    """A class-incremental group's view of the head over all seen classes: its logits rolled
    left by the group's ``offset``, so the group's label y (class offset + y of the head)
    indexes them. Top-1 accuracy and calibration are unchanged by the roll (the softmax is
    permuted, not changed), so the tracker scores a group without knowing its offset."""

    def __init__(self, head: Callable[[torch.Tensor], torch.Tensor], offset: int) -> None:
        super().__init__()
        self.head = head
        self.offset = offset

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.roll(self.head(feats), -self.offset, dims=-1)


def class_prototypes(feats: torch.Tensor, labels: torch.Tensor, num_classes: int, scale: float) -> torch.Tensor:
    """Prototype head [K, D]: the l2-normalised mean of each class's normalised features,
    times ``scale`` (CLIP's exp(logit_scale), as the zero-shot head), so logits are scaled
    cosine similarities to the class means (nearest class mean, Mensink et al., TPAMI 2013;
    SimpleCIL on pre-trained models, Zhou et al., arXiv 2303.07338). A class without
    examples keeps a zero row."""
    sums = torch.zeros(num_classes, feats.shape[1], device=feats.device).index_add_(0, labels, feats.float())
    return F.normalize(sums, dim=-1) * scale


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return float((logits.argmax(-1) == labels).float().mean()) * 100.0


ECE_BINS = 15  # Guo et al. (2017) and the LDIFS authors


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error in percent (Guo et al., ICML 2017), as the LDIFS authors report it.

    Confidence = the top softmax probability. Bin m of ``n_bins`` equal-width bins holds the
    samples with confidence in ((m-1)/M, m/M]; ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)|
    = sum_m |#correct in B_m - total confidence in B_m| / n.
    """
    conf, pred = torch.softmax(logits.float(), dim=-1).max(-1)
    correct = (pred == labels).float()
    bins = (conf * n_bins).ceil().long().clamp(1, n_bins) - 1
    gap = torch.zeros(n_bins, device=conf.device).index_add_(0, bins, correct - conf)
    return float(gap.abs().sum() / len(labels)) * 100.0
