"""The warm-up is capped at half a stage, and the run says so."""

import logging

from methods_testkit import micro_setup, run


def test_capped_warmup_is_logged():
    setup = micro_setup("vit")
    setup.cfg.train.warmup_steps = 100  # the micro stage has 2 steps
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("benchmark.training.engine")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # as the runner sets it while a run.log is open
    try:
        run(setup, "finetune")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    messages = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any("train.warmup_steps=100 capped at 1" in m for m in messages)
