"""DER++ and A-GEM on the engine: the reservoir, the logit replay loss, and A-GEM's projection
g - (g.g_ref / g_ref.g_ref) g_ref (Chaudhry et al., ICLR 2019) on channels-last weights."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from methods.agem import AGEM, agem_project
from methods.derpp import DERPP, Reservoir, masked_mse


def test_projection_is_the_papers_formula_and_only_on_conflict():
    g_ref = torch.tensor([1.0, 2.0, -1.0, 0.5])
    g = torch.tensor([-3.0, 1.0, 2.0, 0.0])  # g.g_ref = -3 + 2 - 2 = -3 < 0
    expected = g - (torch.dot(g, g_ref) / torch.dot(g_ref, g_ref)) * g_ref
    assert torch.allclose(agem_project(g, g_ref), expected)
    assert abs(float(torch.dot(agem_project(g, g_ref), g_ref))) < 1e-6  # no first-order rise on the memory
    agree = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert torch.equal(agem_project(agree, g_ref), agree)


class _Net(nn.Module):
    """A conv + head model in channels-last memory, the layout Avalanche's AGEMPlugin failed on."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
        self.head = nn.Linear(4, 3)

    def forward(self, x, tasks):
        return self.head(self.conv(x.contiguous(memory_format=torch.channels_last)).mean((2, 3)))


def _strategy(model: nn.Module) -> SimpleNamespace:
    return SimpleNamespace(
        model=model,
        preprocess=lambda x: x.float() / 255,
        autocast=contextlib.nullcontext,
        device=torch.device("cpu"),
        seed=0,
        stage_index=2,
    )


def test_agem_projects_the_steps_gradient_of_channels_last_weights():
    torch.manual_seed(0)
    model, method = _Net(), AGEM(AGEM.Params(patterns_per_experience=8, sample_size=8))
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    memory_x = torch.randint(0, 256, (8, 3, 6, 6), dtype=torch.uint8)
    method.memory = [[memory_x, torch.randint(0, 3, (8,)), torch.zeros(8, dtype=torch.long)]]
    strategy = _strategy(model)
    method.before_training_exp(strategy)
    method.before_training_iteration(strategy)
    x, y = torch.rand(8, 3, 6, 6), torch.randint(0, 3, (8,))
    loss = -F.cross_entropy(model(x, None), y)  # pushes against the memory's loss: a conflict
    loss.backward()
    g = torch.cat([p.grad.contiguous().flatten() for p in model.parameters()])
    model.zero_grad()
    F.cross_entropy(model(memory_x.float() / 255, None), method.memory[0][1]).backward()
    g_ref = torch.cat([p.grad.contiguous().flatten() for p in model.parameters()])  # all 8 memory samples
    assert torch.allclose(method.reference, g_ref, atol=1e-6) and torch.dot(g, g_ref) < 0
    for p, part in zip(model.parameters(), g.split([p.numel() for p in model.parameters()])):
        p.grad = (
            part.view_as(p).clone().contiguous(memory_format=torch.channels_last)
            if p.dim() == 4
            else part.view_as(p).clone()
        )
    method.after_backward(strategy)
    projected = torch.cat([p.grad.contiguous().flatten() for p in model.parameters()])
    assert torch.allclose(projected, g - torch.dot(g, g_ref) / torch.dot(g_ref, g_ref) * g_ref, atol=1e-6)


def test_reservoir_keeps_a_uniform_sample_of_the_stream():
    counts = torch.zeros(100)
    for seed in range(300):
        buffer, gen = Reservoir(10), torch.Generator().manual_seed(seed)
        for start in range(0, 100, 8):  # batches of 8 (the last of 4)
            ids = torch.arange(start, min(start + 8, 100))
            buffer.add(torch.zeros(len(ids), 3, 2, 2, dtype=torch.uint8), ids, ids * 0, torch.zeros(len(ids), 2), gen)
        assert len(buffer) == 10 and buffer.seen == 100 and len(set(buffer.labels.tolist())) == 10
        counts[buffer.labels] += 1
    share = counts / 300  # each item kept with probability 10 / 100
    assert abs(share[:50].mean() - 0.1) < 0.02 and abs(share[50:].mean() - 0.1) < 0.02


def test_logits_of_a_narrower_head_are_compared_on_their_own_columns():
    buffer, gen = Reservoir(4), torch.Generator().manual_seed(0)
    images = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
    buffer.add(images, torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long), torch.tensor([[1.0, 2.0]] * 2), gen)
    buffer.add(images, torch.tensor([3, 4]), torch.zeros(2, dtype=torch.long), torch.tensor([[0.0, 0, 0, 5]] * 2), gen)
    assert buffer.widths.tolist() == [2, 2, 4, 4] and buffer.logits.shape == (4, 4)
    outputs = torch.tensor([[1.0, 3.0, 9.0, 9.0], [1.0, 2.0, 9.0, 9.0], [0, 0, 0, 5.0], [0, 0, 0, 7.0]])
    assert torch.isclose(masked_mse(outputs, buffer.logits, buffer.widths), torch.tensor((1.0 + 4.0) / 12))


def test_derpp_adds_alpha_mse_and_beta_cross_entropy_on_two_buffer_batches():
    torch.manual_seed(0)
    model = _Net()
    method = DERPP(DERPP.Params(mem_size=6, batch_size_mem=6, alpha=0.3, beta=0.7))
    images = torch.randint(0, 256, (6, 3, 6, 6), dtype=torch.uint8)
    stored, labels = torch.randn(6, 3), torch.randint(0, 3, (6,))
    method.buffer.add(images, labels, torch.zeros(6, dtype=torch.long), stored, torch.Generator())
    strategy = _strategy(model)
    strategy.loss = torch.tensor(1.0)
    method.before_training_exp(strategy)
    method.before_backward(strategy)
    out = model(images.float() / 255, None)  # both batches hold the whole buffer: order is irrelevant
    expected = 1.0 + 0.3 * F.mse_loss(out, stored) + 0.7 * F.cross_entropy(out, labels)
    assert torch.allclose(strategy.loss, expected, atol=1e-6)
