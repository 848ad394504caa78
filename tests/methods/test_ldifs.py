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


def test_a_deep_copy_of_the_tower_leaves_the_live_taps_alone():
    """LwF keeps a deep copy of the model, hooks included; its forward (fp32, outside
    autocast on CUDA) must not overwrite the live tower's taps that LDIFS takes next."""
    import copy

    visual = open_clip.CLIP(
        embed_dim=8,
        vision_cfg={"image_size": 16, "patch_size": 8, "width": 16, "layers": 4, "head_width": 8},
        text_cfg={"context_length": 4, "vocab_size": 100, "width": 8, "heads": 2, "layers": 1},
    ).visual
    rec = TapRecorder(image_taps(visual))
    previous = copy.deepcopy(visual)  # carries the recorder's hooks
    x = torch.randn(2, 3, 16, 16)
    live = [o.detach().clone() for o in (visual(x), rec.take())[1]]
    visual(x)
    previous(torch.randn(2, 3, 16, 16))  # fires the copied hooks after the live forward
    for got, want in zip(rec.take(), live):
        torch.testing.assert_close(got, want)
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


# ---------------------------------------------------------------- speed paths (issue: LDIFS near FT cost)


def tiny_vit(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.CLIP(
        embed_dim=8,
        vision_cfg={"image_size": 16, "patch_size": 8, "width": 16, "layers": 4, "head_width": 8},
        text_cfg={"context_length": 4, "vocab_size": 100, "width": 8, "heads": 2, "layers": 1},
    ).visual


def tiny_resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return open_clip.CLIP(
        embed_dim=8,
        vision_cfg={"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8},
        text_cfg={"context_length": 4, "vocab_size": 100, "width": 8, "heads": 2, "layers": 1},
    ).visual


class FakeStrategy:
    """What LDIFS's hooks read of the engine: the model, batch, loss, loader, config, device."""

    def __init__(self, visual, device="cpu", augment="none", n=12, batch=5, size=16, epochs=2, amp=False) -> None:
        from types import SimpleNamespace

        from benchmark.training.engine import DeviceBatchLoader

        self.device = torch.device(device)
        self.model = SimpleNamespace(visual=visual.to(self.device))
        self.cfg = SimpleNamespace(augment=augment)
        self.train_epochs = epochs
        self.amp = amp
        g = torch.Generator().manual_seed(1)
        images = torch.randn(n, 3, size, size, generator=g).to(self.device)
        labels = torch.zeros(n, dtype=torch.long, device=self.device)  # on the device, as the engine has them
        tensors = [images, labels, labels.clone()]
        self.dataloader = DeviceBatchLoader(tensors, batch, torch.Generator().manual_seed(2), 0)

    def autocast(self):
        from benchmark.models.preprocess import bf16_autocast

        return bf16_autocast(self.device, self.amp)


def run_hooks(
    hparams: dict, device: str = "cpu", epochs: int = 2, amp: bool = False
) -> tuple[list[float], list[list[torch.Tensor]], object]:
    """LDIFS's hooks over ``epochs`` passes of a small loader: per step, the penalty and the
    gradient it gives the trained tower (no optimiser step, so only the reference path differs)."""
    from benchmark.training.method import build_params
    from methods.ldifs import LDIFS

    method = LDIFS(build_params(LDIFS, hparams))
    visual = tiny_vit()
    strategy = FakeStrategy(visual, device, amp=amp)
    method.before_training_exp(strategy)
    with torch.no_grad():  # move the trained tower away from the reference: a non-zero penalty
        for p in visual.parameters():
            p.add_(0.05 * torch.randn_like(p))
    penalties, grads = [], []
    for _ in range(epochs):
        for batch in strategy.dataloader:
            strategy.mb_x = batch[0]
            method.before_forward(strategy)
            visual(strategy.mb_x)
            strategy.loss = torch.zeros((), device=strategy.device)
            method.before_backward(strategy)
            visual.zero_grad(set_to_none=True)
            strategy.loss.backward()
            penalties.append(float(method.last_distance.detach()))
            grads.append([p.grad.detach().cpu().clone() for p in visual.parameters() if p.grad is not None])
    method.after_training_exp(strategy)
    return penalties, grads, method


def assert_same(a, b, rtol=1e-5, atol=1e-7):
    (pa, ga, _), (pb, gb, _) = a, b
    assert len(pa) == len(pb) and all(x > 0 for x in pa)
    assert pa == pytest.approx(pb, rel=rtol, abs=atol)
    for step_a, step_b in zip(ga, gb):
        assert len(step_a) == len(step_b)
        for x, y in zip(step_a, step_b):
            torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


def test_reference_stream_gives_the_plain_penalty_and_gradient():
    assert_same(run_hooks({"reference_stream": True}), run_hooks({}))


def test_cuda_graph_off_cuda_warns_and_gives_the_plain_numbers():
    with pytest.warns(UserWarning, match="cuda_graph needs CUDA"):
        graph = run_hooks({"cuda_graph": True})
    assert_same(graph, run_hooks({}))


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_reused_taps_give_the_plain_penalty_and_gradient(mode, monkeypatch):
    from methods.ldifs import LDIFS

    calls = []
    plain = run_hooks({})
    original = LDIFS.before_training_exp

    def count_reference_passes(self, strategy, **kw):
        original(self, strategy, **kw)
        self.reference.register_forward_hook(lambda *a: calls.append(1))

    monkeypatch.setattr(LDIFS, "before_training_exp", count_reference_passes)
    reused = run_hooks({"reuse_reference_taps": mode})
    assert_same(reused, plain)
    assert reused[2].reuse_tier == "device"
    assert len(calls) == 3  # epoch 1's three batches only: epoch 2 reads the stored taps


def test_every_speed_path_at_once_gives_the_plain_numbers():
    assert_same(run_hooks({"reference_stream": True, "reuse_reference_taps": "on"}, epochs=3), run_hooks({}, epochs=3))


def test_reuse_refuses_augmentation_and_batchnorm_towers():
    from benchmark.errors import UserError
    from benchmark.training.method import build_params
    from methods.ldifs import LDIFS

    on = LDIFS(build_params(LDIFS, {"reuse_reference_taps": "on"}))
    with pytest.raises(UserError, match="train.augment=randcrop"):
        on.before_training_exp(FakeStrategy(tiny_vit(), augment="randcrop"))
    with pytest.raises(UserError, match="BatchNorm"):
        on.before_training_exp(FakeStrategy(tiny_resnet(), size=32))
    auto = LDIFS(build_params(LDIFS, {"reuse_reference_taps": "auto"}))
    auto.before_training_exp(FakeStrategy(tiny_resnet(), size=32))  # auto: silently recomputes
    assert auto._cache is None and auto.reuse_tier == "recompute"
    with pytest.raises(UserError, match="reuse_reference_taps='sometimes'"):
        build_params(LDIFS, {"reuse_reference_taps": "sometimes"})


def test_reuse_through_the_engine_trains_like_the_plain_path():
    """Two 2-epoch stages of the real scheduler and engine, with and without reuse.

    What the arithmetic allows: epoch 1 computes the reference's taps on both paths alike,
    so its distances are bit-equal; the first reused step sees the same weights, and its taps
    differ from fresh ones only by the reduction order of a reference forward over another
    batch (float32: a few ulps, so rtol 1e-5). From then on the weights differ by rounding,
    and AdamW, which divides by the root of the squared gradients, can turn a rounding-sized
    gradient into a full step: each later step moves a weight by at most about lr, so the
    encoders can differ by up to 2 * lr * (steps after the first reuse). A reuse that served
    another image's taps fails the first-reused-step check by orders of magnitude.
    """
    from methods_testkit import Spy, micro_setup, run

    from methods.ldifs import LDIFS
    from tasks.sequences import Sequence, Stage

    encoders, passes, distances = {}, {"off": [], "on": []}, {"off": [], "on": []}
    for mode in ("off", "on"):

        def count_reference_passes(strategy, mode=mode):
            ldifs = next(p for p in strategy.plugins if isinstance(p, LDIFS))
            ldifs.reference.register_forward_hook(lambda *a: passes[mode].append(1))

        def record_distance(strategy, mode=mode):
            ldifs = next(p for p in strategy.plugins if isinstance(p, LDIFS))
            distances[mode].append(ldifs.last_distance.detach().clone())

        setup = micro_setup("vit")
        lr = setup.cfg.train.lr
        setup.sequence = Sequence("micro-methods", [Stage("alpha", 2), Stage("beta", 2)])
        spy = Spy(before_training_exp=count_reference_passes, after_backward=record_distance)
        result, plugins = run(setup, "ldifs", {"ldifs": {"reuse_reference_taps": mode}}, spies=(spy,))
        assert result.status == "ok"
        encoders[mode] = setup.tracker.encoders[2]
        assert plugins[0].reuse_tier == (None if mode == "off" else "device")
    assert (len(passes["off"]), len(passes["on"])) == (8, 4)  # 2 stages x 2 epochs x 2 steps; reuse: epoch 1 only
    off, on = distances["off"], distances["on"]
    assert len(off) == len(on) == 8
    assert all(torch.equal(a, b) for a, b in zip(off[:2], on[:2]))  # epoch 1: the same computation
    assert off[2] > 0
    torch.testing.assert_close(on[2], off[2], rtol=1e-5, atol=0)  # first reused step, same weights
    later_steps = 8 - 3
    for k, v in encoders["off"].items():
        torch.testing.assert_close(encoders["on"][k], v, rtol=0, atol=2 * lr * later_steps)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    "hparams",
    [
        {"reference_stream": True},
        {"cuda_graph": True},
        {"reuse_reference_taps": "on"},
        {"reference_stream": True, "cuda_graph": True, "reuse_reference_taps": "on"},
    ],
)
def test_speed_paths_on_cuda_give_the_plain_numbers(hparams):
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 on both paths: differences are rounding only
    torch.backends.cudnn.allow_tf32 = False
    assert_same(run_hooks(hparams, "cuda", epochs=3), run_hooks({}, "cuda", epochs=3), rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_speed_paths_under_bf16_autocast_give_the_plain_numbers():
    both = {"reference_stream": True, "cuda_graph": True, "reuse_reference_taps": "on"}
    assert_same(run_hooks(both, "cuda", 3, amp=True), run_hooks({}, "cuda", 3, amp=True), rtol=2e-2, atol=1e-4)
