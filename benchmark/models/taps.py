"""LDIFS feature taps: which intermediate outputs of an image tower are compared, hooks
that record them during the ordinary forward pass, and the distance between two towers'
taps (LDIFS's penalty; the feature-drift measurement reuses it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.errors import UserError


@dataclass
class Tap:
    """One intermediate feature map of the image tower that LDIFS compares."""

    name: str
    module: nn.Module
    token_major: bool  # True: ViT residual stream laid out [B, tokens, width] after fixing
    seq_first: bool = False  # the module emits [tokens, B, width] (open_clip without batch_first)


def image_taps(visual: nn.Module) -> list[Tap]:
    """The 5 LDIFS taps of an image tower (Mukhoti et al. 2024, Sec. 4).

    ViT: ``ln_pre`` and the residual stream after every quarter of the blocks (3, 6, 9, 12
    for ViT-B). ModifiedResNet: the stem's output and the 4 stages. timm towers (ConvNeXt
    and others): the stem and every stage of the trunk.
    """
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, VisionTransformer):
        blocks = visual.transformer.resblocks
        n = len(blocks)
        idx = sorted({max(1, round(n * q / 4)) - 1 for q in (1, 2, 3, 4)})
        seq_first = not getattr(visual.transformer, "batch_first", True)
        return [Tap("ln_pre", visual.ln_pre, True, seq_first)] + [
            Tap(f"block{i + 1}", blocks[i], True, seq_first) for i in idx
        ]
    if isinstance(visual, ModifiedResNet):
        return [Tap("stem", visual.avgpool, False)] + [
            Tap(f"layer{i}", getattr(visual, f"layer{i}"), False) for i in range(1, 5)
        ]
    trunk = getattr(visual, "trunk", None)
    if trunk is not None and hasattr(trunk, "stages"):
        stem = getattr(trunk, "stem", None)
        taps = [Tap("stem", stem, False)] if stem is not None else []
        return taps + [Tap(f"stage{i}", s, False) for i, s in enumerate(trunk.stages)]
    raise UserError(
        f"no LDIFS feature taps are declared for image tower {type(visual).__name__}; "
        "supported: open_clip VisionTransformer, ModifiedResNet, timm towers with .trunk.stages "
        "(add a branch to benchmark.models.taps.image_taps)"
    )


class TapRecorder:
    """Forward hooks that keep the taps' outputs of the last forward pass, in tap order."""

    def __init__(self, taps: list[Tap]) -> None:
        self.taps = taps
        self.outputs: list[Optional[torch.Tensor]] = [None] * len(taps)
        self._handles = [t.module.register_forward_hook(self._hook(i)) for i, t in enumerate(taps)]

    def _hook(self, i: int):
        def hook(module, _inputs, output):
            # A deep copy of the tower (LwF's previous model, a checkpoint) carries this hook
            # along: its forward must not overwrite the live tower's taps.
            if module is not self.taps[i].module:
                return
            out = output[0] if isinstance(output, tuple) else output
            self.outputs[i] = out.transpose(0, 1) if self.taps[i].seq_first else out

        return hook

    def take(self) -> list[torch.Tensor]:
        outs, self.outputs = self.outputs, [None] * len(self.taps)
        if any(o is None for o in outs):
            raise RuntimeError("a feature tap did not fire: was the image tower run since the last take()?")
        return outs  # type: ignore[return-value]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def norm_dim(tap: Tap, axis: str) -> int:
    """The axis each tap is l2-normalised along: dim 1 (the authors', an LPIPS habit: tokens
    of a ViT [B, tokens, width], channels of a conv map [B, C, H, W]) or the feature axis
    (width of a ViT, channels of a conv map)."""
    return -1 if (axis == "features" and tap.token_major) else 1


def ldifs_distance(
    feats: list[torch.Tensor], ref_feats: list[torch.Tensor], taps: list[Tap], axis: str = "authors"
) -> torch.Tensor:
    """Mean over the batch of the mean over taps of the mean squared difference of the
    l2-normalised taps (Mukhoti et al., TMLR 2024, Eq. 2).

    For unit vectors |a - b|^2 = 2 - 2 cos(a, b), so each tap costs one cosine similarity
    along the normalised axis (one read of each tensor) instead of materialising both
    normalised tensors, their difference and its square. Equal to the direct formula up to
    float rounding (tested). (Writing the cosine as three sums of products was measured 3x
    faster on CPU taps, but it moves results at rounding level, which a 6-epoch run amplifies
    into a different dLP: the published numbers keep this form.) The feature-drift measurement
    (``benchmark.evaluation.drift``) calls it per tap, so its distances are this penalty's terms.
    """
    per_tap = []
    for f, r, tap in zip(feats, ref_feats, taps):
        dim = norm_dim(tap, axis)
        cos = F.cosine_similarity(f.float(), r.float(), dim=dim, eps=1e-10)  # [B, ...] without `dim`
        per_tap.append((2 - 2 * cos).flatten(1).mean(1) / f.shape[dim])  # [B]: mean over all entries
    return torch.stack(per_tap).mean(0).mean()
