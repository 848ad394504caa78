"""A procedural world of captioned images whose concepts compete for a small encoder.

Every image is one coloured shape of some size on a grey background texture; its caption
names the attributes. Pretraining on the captions teaches a tiny CLIP all four concepts;
fine-tuning on one (shape, say) lets the encoder drop the others (texture, colour), which
is the concept forgetting of Mukhoti et al. (TMLR 2024) in CPU minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tasks.base import Split, Task, TaskContext, register_task

IMAGE_SIZE = 32
SHAPES = ["circle", "square", "triangle", "diamond", "cross", "ring"]
COLOURS = ["red", "green", "blue", "yellow", "magenta", "cyan"]
TEXTURES = ["striped", "barred", "diagonal", "checkered", "dotted", "speckled"]
SIZES = ["small", "medium", "large"]
QUADRANTS = ["top left", "top right", "bottom left", "bottom right"]
_RGB = torch.tensor([[220, 40, 40], [40, 200, 60], [50, 80, 230], [230, 210, 40], [210, 50, 210], [40, 210, 220]])
_RADIUS = torch.tensor([4.5, 7.0, 9.5])

FACTORS = {"shape": SHAPES, "colour": COLOURS, "texture": TEXTURES, "size": SIZES, "quadrant": QUADRANTS}


@dataclass
class World:
    """A batch of rendered images and the factors that made them."""

    images: torch.Tensor  # uint8 [N, 3, 32, 32]
    factors: dict[str, torch.Tensor]  # name -> int64 [N]

    def captions(self, seed: int) -> list[str]:
        """One caption per image, naming a random non-empty subset of its attributes."""
        return _captions(self.factors, torch.Generator().manual_seed(seed))


def _shape_masks(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Boolean masks [6, N, H, W] of every shape, centred at (0, 0) with radius r [N, 1, 1]."""
    dist = (dx**2 + dy**2).sqrt()
    adx, ady = dx.abs(), dy.abs()
    return torch.stack(
        [
            dist <= r,  # circle
            torch.maximum(adx, ady) <= 0.8 * r,  # square
            (dy <= 0.7 * r) & (adx <= (dy + r) * 0.55),  # triangle, apex up
            adx + ady <= r,  # diamond
            ((adx <= 0.3 * r) & (ady <= r)) | ((ady <= 0.3 * r) & (adx <= r)),  # cross
            (dist <= r) & (dist >= 0.55 * r),  # ring
        ]
    )


def _textures(n: int, yy: torch.Tensor, xx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Binary patterns [6, N, H, W] with a random period and phase per image."""
    w = torch.randint(3, 6, (n, 1, 1), generator=g).float()
    p = torch.randint(0, 6, (n, 1, 1), generator=g).float()
    q = torch.randint(0, 6, (n, 1, 1), generator=g).float()
    speckle = torch.rand(n, IMAGE_SIZE // 2, IMAGE_SIZE // 2, generator=g) < 0.5
    return torch.stack(
        [
            ((yy + p) // w) % 2 == 0,
            ((xx + p) // w) % 2 == 0,
            ((xx + yy + p) // w) % 2 == 0,
            (((xx + p) // w) + ((yy + q) // w)) % 2 == 0,
            ((xx + p) % (w + 1) < 2) & ((yy + q) % (w + 1) < 2),
            speckle.repeat_interleave(2, 1).repeat_interleave(2, 2),
        ]
    )


def render(n: int, seed: int) -> World:
    """Render n images deterministically for a seed (vectorised: ~10k images/s)."""
    g = torch.Generator().manual_seed(seed)
    f = {name: torch.randint(0, len(vals), (n,), generator=g) for name, vals in FACTORS.items() if name != "quadrant"}
    r = (_RADIUS[f["size"]] + torch.rand(n, generator=g) - 0.5).view(n, 1, 1)
    cx = r.view(n) + 1 + torch.rand(n, generator=g) * (IMAGE_SIZE - 2 * r.view(n) - 2)
    cy = r.view(n) + 1 + torch.rand(n, generator=g) * (IMAGE_SIZE - 2 * r.view(n) - 2)
    f["quadrant"] = (cy >= IMAGE_SIZE / 2).long() * 2 + (cx >= IMAGE_SIZE / 2).long()
    yy, xx = torch.meshgrid(torch.arange(IMAGE_SIZE) + 0.5, torch.arange(IMAGE_SIZE) + 0.5, indexing="ij")
    mask = _shape_masks(xx - cx.view(n, 1, 1), yy - cy.view(n, 1, 1), r)[f["shape"], torch.arange(n)]
    pattern = _textures(n, yy, xx, g)[f["texture"], torch.arange(n)].float()
    lo = 40 + 50 * torch.rand(n, 1, 1, generator=g)
    hi = 130 + 60 * torch.rand(n, 1, 1, generator=g)
    background = (lo + (hi - lo) * pattern).unsqueeze(1).expand(n, 3, IMAGE_SIZE, IMAGE_SIZE)
    colour = _RGB[f["colour"]].float() * (0.8 + 0.25 * torch.rand(n, 1, generator=g))
    img = torch.where(mask.unsqueeze(1), colour.view(n, 3, 1, 1), background)
    img = img + 8 * torch.randn(img.shape, generator=g)
    return World(img.clamp(0, 255).round().to(torch.uint8), f)


_CAPTION_FORMS = [
    "a {size} {colour} {shape} on a {texture} background",
    "a {colour} {shape}",
    "a {shape} on a {texture} background",
    "a {size} {shape}",
    "a {colour} object",
    "something on a {texture} background",
    "a {shape}",
    "a {size} {colour} {shape}",
    "a {size} object",
    "a {colour} {shape} on a {texture} background",
]


def _captions(factors: dict[str, torch.Tensor], g: torch.Generator) -> list[str]:
    form_idx = torch.randint(0, len(_CAPTION_FORMS), (len(factors["shape"]),), generator=g).tolist()
    names = {k: [FACTORS[k][i] for i in v.tolist()] for k, v in factors.items() if k != "quadrant"}
    return [_CAPTION_FORMS[fi].format(**{k: names[k][i] for k in names}) for i, fi in enumerate(form_idx)]


def _factor_task(name: str, factor: str, templates: list[str], seed_offset: int, description: str):
    """Register a task that classifies one factor of freshly rendered images."""

    @register_task(name)
    def make(ctx: TaskContext) -> Task:
        n_train = ctx.train_limit or 2000
        n_test = ctx.test_limit or 1000
        train = render(n_train, seed=10_000 * seed_offset + ctx.seed)
        test = render(n_test, seed=10_000 * seed_offset + ctx.seed + 7919)
        # The world is i.i.d. by construction, so a validation split is one more rendering
        # (as large as test), drawn only when asked: train and test stay as they were.
        val = render(n_test, seed=10_000 * seed_offset + ctx.seed + 3571) if ctx.val else None
        return Task(
            name,
            list(FACTORS[factor]),
            templates,
            Split(train.images, train.factors[factor]),
            Split(test.images, test.factors[factor]),
            description,
            source="procedural (tasks/synthetic.py)",
            val=Split(val.images, val.factors[factor]) if val else None,
        )

    make.__doc__ = description
    return make


_factor_task(
    "shapes",
    "shape",
    ["a {}.", "a photo of a {}.", "a {} shape."],
    1,
    "Procedural world: which of 6 shapes (concept the tiny CLIP learns least well).",
)
_factor_task(
    "textures",
    "texture",
    ["something on a {} background.", "a {} background."],
    2,
    "Procedural world: which of 6 grey background textures.",
)
_factor_task("colours", "colour", ["a {} object.", "a {} thing."], 3, "Procedural world: which of 6 object colours.")
_factor_task("sizes", "size", ["a {} object.", "a {} shape."], 4, "Procedural world: small, medium or large object.")
_factor_task(
    "quadrants",
    "quadrant",
    ["a shape in the {}.", "something in the {} corner."],
    5,
    "Procedural world: which quadrant holds the object (never named in captions).",
)


@register_task("objects")
def make_objects(ctx: TaskContext) -> Task:
    """Procedural world: which of 36 coloured shapes ("red circle"), the classes the embedded
    class-incremental sequence splits into groups (tasks/sequences/objects_cil.yaml)."""
    n_train, n_test = ctx.train_limit or 4000, ctx.test_limit or 2000
    seed = 60_000 + ctx.seed
    splits = [render(n, s) for n, s in ((n_train, seed), (n_test, seed + 7919))]
    val = render(n_test, seed + 3571) if ctx.val else None
    label = lambda w: w.factors["shape"] * len(COLOURS) + w.factors["colour"]  # noqa: E731
    return Task(  # type: ignore[misc]
        "objects",
        [f"{c} {s}" for s in SHAPES for c in COLOURS],
        ["a {}.", "a photo of a {}."],
        *(Split(w.images, label(w)) for w in splits),  # type: ignore[arg-type]
        description="Procedural world: which of 36 shape x colour classes.",
        source="procedural (tasks/synthetic.py)",
        val=Split(val.images, label(val)) if val else None,
    )
