"""Every command the README and docs/ show still exists and parses.

Each ``python run_benchmark.py ...`` line of a ```bash block is resolved through the real
command line with ``--print-config`` (or ``--dry-run`` for a sweep), which checks every
flag, dotted override, method, sequence and preset it names without training anything;
lines that need the reader's own files (``~/``, ``/data``, ``my.yaml``, ``results/...``)
are skipped. Each ``python -m MODULE`` line must name a module of the suite with a ``main``.
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Paths and names that stand for the reader's own files, data or runs.
READERS_OWN = (
    "~",
    "...",
    "<",
    "/data",
    "/ckpts",
    "/models",
    "my_",
    "my.yaml",
    "mine",
    "results/",
    "RUN",
    "DEST",
    "FILE",
)


def _commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            joined = block.replace("\\\n", " ")
            for line in joined.splitlines():
                line = " ".join(shlex.split(line, comments=True)) if line.strip() else ""
                if line.startswith(("python run_benchmark.py", "python -m benchmark")):
                    found.append((page.relative_to(ROOT).as_posix(), line))
    return found


COMMANDS = _commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 20 and any(p == "README.md" for p, _ in COMMANDS)


@pytest.mark.parametrize("page,line", [c for c in COMMANDS if c[1].startswith("python run_benchmark.py")])
def test_run_benchmark_lines_resolve(page, line, tmp_path, capsys, monkeypatch):
    if any(own in line for own in READERS_OWN):
        pytest.skip("names the reader's own files")
    from benchmark.run.cli import main

    monkeypatch.chdir(ROOT)
    argv = shlex.split(line)[2:]
    if not any(a.startswith("--list-") or a in ("--print-config", "--dry-run") for a in argv):
        argv += ["--dry-run"] if "--sweep" in argv else ["--print-config"]
    argv += ["--results-dir", str(tmp_path)]
    assert main(argv) == 0, f"{page}: {line}: {capsys.readouterr().err.strip()}"


@pytest.mark.parametrize("page,line", [c for c in COMMANDS if c[1].startswith("python -m benchmark")])
def test_module_lines_name_a_command(page, line):
    module = shlex.split(line)[2]
    assert callable(getattr(importlib.import_module(module), "main", None)), f"{page}: {line}"
