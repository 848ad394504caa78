"""ClipClassifier: one head per task on the l2-normalised image embedding."""

import torch
import torch.nn.functional as F

from benchmark.models.classifier import PAD_LOGIT, ClipClassifier


def _model() -> ClipClassifier:
    torch.manual_seed(0)
    model = ClipClassifier(torch.nn.Linear(5, 4))  # a stand-in image tower: [B, 5] -> [B, 4]
    model.add_head(0, torch.randn(3, 4))  # task 0: 3 classes
    model.add_head(1, torch.randn(2, 4), bias=torch.tensor([0.5, -0.5]))  # task 1: 2 classes
    return model


def test_a_head_reads_the_normalised_embedding_with_the_given_weights():
    model, x = _model(), torch.randn(6, 5)
    feats = F.normalize(model.visual(x), dim=-1)
    expected = feats @ model.heads["1"].weight.T + torch.tensor([0.5, -0.5])
    assert torch.allclose(model(x, 1), expected)
    assert torch.allclose(model.features(x).norm(dim=-1), torch.ones(6))


def test_mixed_task_batches_pad_the_narrower_heads_logits():
    model, x = _model(), torch.randn(4, 5)
    labels = torch.tensor([0, 1, 1, 0])
    out = model(x, labels)  # [4, 3]: the widest head
    assert out.shape == (4, 3)
    assert torch.allclose(out[labels == 0], model(x[labels == 0], 0))
    assert torch.allclose(out[labels == 1, :2], model(x[labels == 1], 1))
    assert (out[labels == 1, 2] == PAD_LOGIT).all()  # a class task 1 lacks never wins the argmax


def test_no_task_labels_give_every_heads_logits_from_one_pass():
    model, x = _model(), torch.randn(3, 5)
    out = model(x, None)
    assert set(out) == {0, 1} and out[0].shape == (3, 3) and out[1].shape == (3, 2)
    assert torch.allclose(out[1], model(x, 1))
