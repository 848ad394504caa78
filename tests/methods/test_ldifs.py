import math

import open_clip
import pytest
import torch

from benchmark.models.taps import Tap, TapRecorder, image_taps
from methods.ldifs import ldifs_distance


def transcription(feats, refs, dims):
    """The formula written out with loops: normalise each tap along `dim` (LPIPS-style
    x / sqrt(sum x^2 + eps)), mean squared difference over the non-batch entries, mean over
    taps, mean over the batch."""
    batch = feats[0].shape[0]
    total = 0.0
    for b in range(batch):
        per_tap = []
        for f, r, dim in zip(feats, refs, dims):
            fb, rb = f[b : b + 1], r[b : b + 1]
            fn = fb / torch.sqrt((fb**2).sum(dim=dim, keepdim=True) + 1e-10)
            rn = rb / torch.sqrt((rb**2).sum(dim=dim, keepdim=True) + 1e-10)
            sq = ((fn - rn) ** 2).flatten().tolist()
            per_tap.append(sum(sq) / len(sq))
        total += sum(per_tap) / len(per_tap)
    return total / batch


@pytest.mark.parametrize("axis", ["authors", "features"])
def test_distance_matches_transcription(axis):
    g = torch.Generator().manual_seed(0)
    vit = [torch.randn(3, 5, 4, generator=g) for _ in range(2)]  # [B, tokens, width]
    conv = [torch.randn(3, 6, 2, 2, generator=g) for _ in range(2)]  # [B, C, H, W]
    feats, refs = [vit[0], conv[0]], [vit[1], conv[1]]
    taps = [Tap("vit", torch.nn.Identity(), True), Tap("conv", torch.nn.Identity(), False)]
    dims = [1 if axis == "authors" else 2, 1]  # tokens vs width for the ViT tap; channels for conv
    got = ldifs_distance(feats, refs, taps, axis)
    assert math.isclose(float(got), transcription(feats, refs, dims), rel_tol=1e-5)


def test_hand_computed_value():
    # One sample, one ViT tap [1, 2 tokens, 1 width]: f = (3, 4) -> (0.6, 0.8); r = (1, 0).
    # Squared differences 0.16 and 0.64, mean 0.4.
    f = torch.tensor([[[3.0], [4.0]]])
    r = torch.tensor([[[1.0], [0.0]]])
    d = ldifs_distance([f], [r], [Tap("t", torch.nn.Identity(), True)], "authors")
    assert math.isclose(float(d), 0.4, rel_tol=1e-6)


def test_identical_features_give_zero():
    x = torch.randn(2, 4, 3, 3)
    assert float(ldifs_distance([x], [x.clone()], [Tap("t", torch.nn.Identity(), False)])) < 1e-7


@pytest.mark.parametrize(
    "layers,expected",
    [
        (12, ["ln_pre", "block3", "block6", "block9", "block12"]),
        (4, ["ln_pre", "block1", "block2", "block3", "block4"]),
    ],
)
def test_vit_taps_follow_the_authors(layers, expected):
    visual = open_clip.CLIP(
        embed_dim=8,
        vision_cfg={"image_size": 16, "patch_size": 8, "width": 16, "layers": layers, "head_width": 8},
        text_cfg={"context_length": 4, "vocab_size": 100, "width": 8, "heads": 2, "layers": 1},
    ).visual
    taps = image_taps(visual)
    assert [t.name for t in taps] == expected
    rec = TapRecorder(taps)
    visual(torch.randn(2, 3, 16, 16))
    outs = rec.take()
    assert all(o.shape == (2, 5, 16) for o in outs)  # [B, tokens = 4 patches + cls, width]
    rec.remove()


def test_resnet_taps_are_stem_and_four_stages():
    visual = open_clip.CLIP(
        embed_dim=8,
        vision_cfg={"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8},
        text_cfg={"context_length": 4, "vocab_size": 100, "width": 8, "heads": 2, "layers": 1},
    ).visual
    taps = image_taps(visual)
    assert [t.name for t in taps] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    rec = TapRecorder(taps)
    visual(torch.randn(2, 3, 32, 32))
    assert [o.shape[1] for o in rec.take()] == [8, 32, 64, 128, 256]  # channels: width, then 4x per stage


def test_reference_copy_matches_the_training_encoder_at_step_zero():
    """With BatchNorm towers, the frozen reference must normalise like the training encoder:
    the distance is zero before any update, and the reference's running stats never move."""
    from methods.ldifs import frozen_like_training

    visual = open_clip.CLIP(
        embed_dim=8,
        vision_cfg={"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8},
        text_cfg={"context_length": 4, "vocab_size": 100, "width": 8, "heads": 2, "layers": 1},
    ).visual.train()
    ref = frozen_like_training(visual)
    before = {k: v.clone() for k, v in ref.state_dict().items() if "running" in k}
    live, frozen = TapRecorder(image_taps(visual)), TapRecorder(image_taps(ref))
    x = torch.randn(4, 3, 32, 32)
    visual(x)
    with torch.no_grad():
        ref(x)
    assert float(ldifs_distance(live.take(), frozen.take(), live.taps).detach()) < 1e-7  # float rounding only
    after = {k: v for k, v in ref.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
