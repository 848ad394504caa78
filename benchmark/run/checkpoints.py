"""Stage-granular checkpoints: a killed run resumes after its last finished stage."""

from __future__ import annotations

import logging
import pickle
import random
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from benchmark.files import atomic_write
from benchmark.run.provenance import git_revision

log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StageCheckpoints:
    """The latest stage of one (method, seed): model, method state, RNG, tracker rows."""

    def __init__(self, folder: Optional[Path], spec: str, seed: int, keep: bool = False) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", spec)
        self.path = folder / "checkpoints" / f"{safe}__seed{seed}.pt" if folder else None
        self.keep = keep

    def load(self) -> Optional[dict[str, Any]]:
        if self.path is None or not self.path.is_file():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("git_revision", git_revision()) != git_revision():  # pickled objects follow the code
            log.warning(
                f"{self.path.name} was written by suite revision {state['git_revision']}, this is "
                f"{git_revision()}: resuming anyway; use --fresh if the change matters"
            )
        return state

    def save(self, state: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {**state, "git_revision": git_revision()}
        try:
            if self.keep and "stage" in state:  # keep every stage's file, not only the latest
                atomic_write(
                    self.path.with_name(f"{self.path.stem}.stage{state['stage']}.pt"),
                    lambda stream: torch.save(state, stream),
                    binary=True,
                )
            atomic_write(self.path, lambda stream: torch.save(state, stream), binary=True)
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            # A method whose state cannot be pickled (e.g. a class defined inside a function)
            # still runs; it just restarts from stage 1 if the run is interrupted.
            log.warning(f"no checkpoint for {self.path.stem}: its state cannot be saved ({e})")

    def finish(self, state: dict[str, Any]) -> None:
        """The (method, seed) is done: keep its rows, drop the weights unless asked to keep them."""
        if not self.keep:
            state = {k: v for k, v in state.items() if k not in ("model", "plugins", "clock")}
        self.save(state)
        if self.path is not None and not self.path.is_file():  # unpicklable: keep the rows at least
            self.save({k: v for k, v in state.items() if k not in ("model", "plugins", "clock")})
