"""FLYP: a trainable text-tower copy in the optimiser, the contrastive loss, heads rebuilt from it."""

from __future__ import annotations

import torch
from methods_testkit import Spy, micro_setup, run

from benchmark.evaluation.heads import zeroshot_weights


def test_flyp_trains_a_text_copy_and_rebuilds_every_head_from_it():
    setup = micro_setup()
    original_text = {k: v.clone() for k, v in setup.bundle.model.state_dict().items()}
    seen = {}

    def check_optimizer(strategy):
        optimised = {id(p) for group in strategy.optimizer.param_groups for p in group["params"]}
        seen["text_optimised"] = all(id(p) in optimised for p in strategy.model.flyp_text.parameters())
        seen["criterion"] = type(strategy._criterion).__name__

    def check_loss(strategy):  # the engine's loss is the contrastive one, not the head's CE
        ce = torch.nn.functional.cross_entropy(strategy.mb_output.float(), strategy.mb_y)
        seen.setdefault("loss_minus_ce", []).append(float(strategy.loss.detach() - ce.detach()))

    spy = Spy(before_training_exp=check_optimizer, before_backward=check_loss)
    result, (flyp,) = run(setup, "flyp", spies=(spy,))

    # The engine asks FLYP's task_loss hook for the step's loss; Avalanche's criterion slot
    # keeps plain cross-entropy, so any other caller of it (EWC's Fisher pass) still gets CE.
    assert seen["text_optimised"] and seen["criterion"] == "CrossEntropyLoss"
    assert all(abs(d) > 1e-6 for d in seen["loss_minus_ce"])
    for k, v in setup.bundle.model.state_dict().items():  # the tracker's text tower is untouched
        assert torch.equal(v, original_text[k]), k
    assert any(
        not torch.equal(p, original_text[k]) for k, p in flyp.text.state_dict().items() if not k.startswith("visual")
    )
    heads = setup.tracker.heads[2]  # after stage 2: both tasks' heads from the FLYP text tower
    for task_name, head in heads.items():
        task = setup.tasks[task_name]
        expected = zeroshot_weights(flyp.text, setup.bundle.tokenizer, task.prompts(), setup.device)
        torch.testing.assert_close(head.weight, expected)
        assert torch.count_nonzero(head.bias) == 0


def test_flyp_with_replay_builds_prompts_for_mixed_task_batches():
    """In stage 2 replay mixes both tasks in a batch: every sample's prompt comes from its own
    task's table, for its own class (any template)."""
    from methods.flyp import FLYP

    setup = micro_setup()
    checked = {"mixed_batches": 0}
    original = FLYP.batch_prompts

    def spy(self, y, task_ids, strategy):
        tokens = original(self, y, task_ids, strategy)
        if len(torch.unique(task_ids)) > 1:
            checked["mixed_batches"] += 1
            for row, label, task in zip(tokens, y.tolist(), task_ids.tolist()):
                table = self.prompt_tokens[task][label]  # [templates, L] of that task and class
                assert any(torch.equal(row, option) for option in table)
        return tokens

    FLYP.batch_prompts = spy
    try:
        result, _ = run(setup, "flyp+replay", {"replay": {"mem_size": 8}})
    finally:
        FLYP.batch_prompts = original
    assert checked["mixed_batches"] >= 1
    assert all(s["final_loss"] == s["final_loss"] for s in result.stages)
