"""Model loading routes, tested offline on files the tests write themselves."""

import json

import open_clip
import pytest
import torch

from benchmark.config import ModelConfig
from benchmark.errors import UserError
from benchmark.models.clip_loading import load_clip
from benchmark.models.preprocess import BatchPreprocess

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
CPU = torch.device("cpu")


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_file_through_the_pretrained_path_route(tmp_path):
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "tiny-test-arch.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(tmp_path / "cfgs")  # an architecture open_clip knows by name
    model = open_clip.create_model("tiny-test-arch")
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    bundle = load_clip(ModelConfig(name="tiny-test-arch", pretrained=str(tmp_path / "ckpt.pt")), CPU)
    assert same_weights(bundle.model, model) and bundle.image_size == 32


def test_local_dir_route(tmp_path):
    model = open_clip.CLIP(**TINY)
    (tmp_path / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}})
    )
    torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    bundle = load_clip(ModelConfig(name=f"local-dir:{tmp_path}"), CPU)
    assert same_weights(bundle.model, model)
    assert bundle.mean == (0.5, 0.5, 0.5) and bundle.tokenizer(["a red ring"]).shape == (1, 8)


def test_missing_weights_say_which_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UserError) as err:
        load_clip(ModelConfig(name="RN50", pretrained="openai"), CPU)
    message = str(err.value)
    assert "RN50/openai" in message and str(tmp_path / "empty-cache") in message
    assert "model.pretrained=/path/to/checkpoint" in message and "\n" not in message


def test_unknown_tag_lists_the_valid_ones():
    with pytest.raises(UserError, match="unknown pretrained tag 'nope' for model 'RN50'; valid choices: .*openai"):
        load_clip(ModelConfig(name="RN50", pretrained="nope"), CPU)


def test_batch_preprocess_resizes_and_normalises():
    prep = BatchPreprocess(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    out = prep(torch.full((2, 3, 32, 32), 255, dtype=torch.uint8))
    assert out.shape == (2, 3, 64, 64) and torch.allclose(out, torch.ones_like(out), atol=1e-4)


# Architecture/tag pairs of open_clip's registry (no download: the architecture is built on
# the meta device, from the config ``load_clip`` resolves, and its activation inspected).
ACTIVATION_PAIRS = [
    ("ViT-B-32", "openai"),  # the paper's model: QuickGELU weights, a GELU config in open_clip 3.x
    ("ViT-B-16", "openai"),
    ("RN50", "openai"),
    ("ViT-B-32", "laion400m_e32"),  # QuickGELU-trained LAION weights
    ("ViT-B-32", "laion2b_s34b_b79k"),  # GELU-trained
    ("ViT-B-32-quickgelu", "metaclip_400m"),
]


@pytest.mark.parametrize("name,tag", ACTIVATION_PAIRS)
def test_the_activation_a_tag_was_trained_with_is_the_one_built(name, tag):
    from open_clip.pretrained import get_pretrained_cfg

    from benchmark.models.clip_loading import activation_kwargs, tag_activation

    wanted = bool(get_pretrained_cfg(name, tag).get("quick_gelu", False))
    assert tag_activation(name, tag) is wanted
    with torch.device("meta"):
        model = open_clip.create_model(name, pretrained=None, device="meta", **activation_kwargs(wanted))
    built = {type(m).__name__ for m in model.modules() if type(m).__name__ in ("GELU", "QuickGELU")}
    assert built == {"QuickGELU" if wanted else "GELU"}


def test_every_registered_tag_resolves_to_its_own_activation():
    from open_clip.pretrained import get_pretrained_cfg

    from benchmark.models.clip_loading import tag_activation

    for name, tag in open_clip.list_pretrained():
        if name.endswith("-quickgelu") and not get_pretrained_cfg(name, tag).get("quick_gelu", False):
            continue  # refused (next test); none in open_clip 3.3's registry
        assert tag_activation(name, tag) is bool(get_pretrained_cfg(name, tag).get("quick_gelu", False))


def test_an_explicit_activation_the_weights_were_not_trained_with_is_refused():
    with pytest.raises(
        UserError, match="builds QuickGELU but pretrained tag 'laion2b_s34b_b79k' was trained with GELU"
    ):
        load_clip(ModelConfig(name="ViT-B-32-quickgelu", pretrained="laion2b_s34b_b79k"), CPU)


def test_files_and_random_weights_keep_the_architecture_activation(tmp_path):
    from benchmark.models.clip_loading import tag_activation

    assert tag_activation("ViT-B-32", None) is None
    assert tag_activation("ViT-B-32", str(tmp_path / "ckpt.pt")) is None
    assert tag_activation(f"local-dir:{tmp_path}", "openai") is None


def test_weights_digest_names_the_weights_not_their_layout():
    from benchmark.models.clip_loading import weights_digest

    model = open_clip.CLIP(**TINY)
    digest = weights_digest(model)
    assert len(digest) == 64 and digest == weights_digest(model.to(memory_format=torch.channels_last))
    with torch.no_grad():
        model.logit_scale.add_(1e-3)
    assert weights_digest(model) != digest


def test_the_bundle_records_the_digest_of_what_it_loaded(tmp_path):
    from benchmark.models.clip_loading import weights_digest

    model = open_clip.CLIP(**TINY)
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY}))
    torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    bundle = load_clip(ModelConfig(name=f"local-dir:{tmp_path}"), CPU)
    assert bundle.weights_sha256 == weights_digest(model)
