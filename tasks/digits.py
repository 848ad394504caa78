"""scikit-learn's handwritten digits (UCI, 1,797 8x8 images): real data that ships in a package."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tasks.base import Split, Task, TaskContext, register_task

N_TRAIN, N_TEST = 1000, 500  # of 1,797 images; the other 297 are the validation split


def render_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 [N, 3, 32, 32] images (upsampled grey) and their labels [N]."""
    from sklearn.datasets import load_digits  # imported lazily: only this task needs it

    bunch = load_digits()
    x = torch.from_numpy(bunch.images).float().unsqueeze(1) * (255.0 / 16.0)  # [N, 1, 8, 8]
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = x.clamp(0, 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return x, torch.from_numpy(bunch.target).long()


@register_task("digits")
def make_digits(ctx: TaskContext) -> Task:
    """Handwritten digits from sklearn.datasets.load_digits, upsampled to 32x32 grey."""
    x, y = render_digits()
    # A fixed seeded split, the same for every run seed: 1,000 train, 297 validation, 500
    # test. The validation images are not taken from train, so a sweep that scores them
    # fine-tunes on exactly the images a plain run does (as the procedural tasks render
    # theirs apart); they are returned only when asked, like theirs.
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1797))
    fit, held, tested = perm[:N_TRAIN], perm[N_TRAIN : len(y) - N_TEST], perm[len(y) - N_TEST :]
    train = Split(x[fit], y[fit]).subset(ctx.train_limit, ctx.seed)
    test = Split(x[tested], y[tested]).subset(ctx.test_limit, ctx.seed)
    val = Split(x[held], y[held]).subset(ctx.test_limit, ctx.seed) if ctx.val else None
    classnames = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    templates = ['a photo of the number: "{}".', "a handwritten digit {}."]
    return Task(
        "digits",
        classnames,
        templates,
        train,
        test,
        "Handwritten digits shipped with scikit-learn (real data, offline).",
        source="sklearn.datasets.load_digits",
        val=val,
    )
