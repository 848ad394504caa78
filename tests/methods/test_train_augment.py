"""train.augment in the engine: off feeds exactly the preprocessed images, rrc seeded crops."""

import torch
from methods_testkit import Spy, micro_setup, run


def test_engine_inputs_with_augment_off_and_on():
    def inputs(augment: str) -> list[torch.Tensor]:
        setup = micro_setup("vit")
        setup.cfg.train.augment = augment
        seen: list[torch.Tensor] = []
        run(setup, "finetune", spies=(Spy(before_forward=lambda s: seen.append(s.mb_x.clone())),))
        return seen, setup

    off, setup = inputs("none")
    images_stage1 = setup.tasks["alpha"].train.images
    # augmentation off: every batch is exactly preprocess(images) of some training images
    expected = setup.preprocess(images_stage1)
    for batch in off[:2]:
        assert all(any(torch.equal(row, e) for e in expected) for row in batch)
    on, _ = inputs("rrc")
    again, _ = inputs("rrc")
    assert not torch.equal(on[0], off[0])
    assert all(torch.equal(a, b) for a, b in zip(on, again))  # seeded: the same crops run to run
