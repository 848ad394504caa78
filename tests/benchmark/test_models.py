"""Model loading routes, tested offline on files the tests write themselves."""

import json

import open_clip
import pytest
import torch

from benchmark.config import ModelConfig
from benchmark.errors import UserError
from benchmark.models.loading import load_clip
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
