"""Every command the README and docs/ show still exists and parses.

Each ``python run_benchmark.py ...`` line of a ```bash block is resolved through the real
command line with ``--print-config`` (or ``--dry-run`` for a sweep), which checks every
flag, dotted override, method, sequence and preset it names without training anything;
lines that need the reader's own files (``~/``, ``/data``, ``my.yaml``, ``results/...``)
are skipped. Each ``python -m MODULE`` line must name a module of the suite with a ``main``.
"""

from __future__ import annotations

import importlib
import json
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


def _table_rows(page: Path, header: str) -> dict[str, list[str]]:
    """The cells per method of the first table of ``page`` whose header line starts with ``header``."""
    rows, in_table = {}, False
    for line in page.read_text().splitlines():
        if line.startswith(header):
            in_table = True
        elif in_table and line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
            rows[cells[0].split(" ")[0]] = cells[1:]
        elif in_table and not line.startswith("|"):
            break
    return rows


def test_the_readme_headline_is_the_published_reference_run():
    """The headline numbers are the criterion of docs/reference/embedded-default, not typed."""
    from benchmark.reporting.criterion import criterion_table, load_runs

    table = criterion_table(load_runs([ROOT / "docs/reference/embedded-default"])).set_index("method")
    rows = _table_rows(ROOT / "README.md", "| method | last head acc")
    assert set(rows) == {"finetune", "ldifs"}
    for method, cells in rows.items():
        for key, cell in zip(("last", "diagonal", "dlp"), cells):
            r = table.loc[method]
            assert cell == f"{r[key]:.1f} ± {r[f'{key}_std']:.1f}", (method, key)


@pytest.mark.parametrize(
    "page,header", [("README.md", "| method | Avg"), ("docs/class_incremental.md", "| method | inc_avg (Avg)")]
)
def test_the_class_incremental_tables_are_the_published_reference_run(page, header):
    """The class-incremental numbers are docs/reference/objects-cil's summary, not typed."""
    import pandas as pd

    summary = pd.read_csv(ROOT / "docs/reference/objects-cil/summary.csv")
    head, lp, zs = (summary[summary["kind"] == kind].set_index("method") for kind in ("head", "lp", "zs"))
    rows = _table_rows(ROOT / page, header)
    assert set(rows) == set(head.index)
    for method, cells in rows.items():
        h, p, z = head.loc[method], lp.loc[method], zs.loc[method]
        expected = [
            f"{h['inc_avg']:.1f} ± {h['inc_avg_std']:.1f}",
            f"{h['inc_last']:.1f} ± {h['inc_last_std']:.1f}",
            f"{h['forgetting_if__objects-g1']:.1f}",
            f"{p['delta_final_untrained']:.1f} ± {p['delta_final_untrained_std']:.1f}",
            f"{z['delta_final_untrained']:.1f} ± {z['delta_final_untrained_std']:.1f}",
        ]
        assert len(cells) >= 4 and cells == expected[: len(cells)], method


def test_the_presets_settings_are_the_published_selections_widest_margin_on_val():
    """The embedded default's lr and alpha are read off the committed validation sweep, not typed."""
    import yaml

    from benchmark.reporting.criterion import criterion_table, load_runs, parse_label

    selection = ROOT / "docs/reference/embedded-default-selection"
    table = criterion_table(load_runs([selection], "val"), split="val")
    met = table[table["method"].str.startswith("ldifs") & table["goal_met"].fillna(False).astype(bool)]
    assert len(met) >= 3  # every alpha at lr 1e-3 meets it; lr 5e-4 meets it nowhere
    widest = parse_label(met.loc[met["margin"].idxmax(), "method"])[1]
    preset = yaml.safe_load((ROOT / "benchmark/presets/embedded.yaml").read_text())
    assert float(widest["ldifs.alpha"]) == preset["hparams"]["ldifs"]["alpha"]
    assert float(widest.get("train.lr", preset["train"]["lr"])) == preset["train"]["lr"]


def test_the_choice_table_is_criterions_output_on_the_published_selection():
    """docs/embedded_default.md's choice table is `criterion --split val` on the committed sweep, line for line."""
    from benchmark.reporting.criterion import criterion_table, load_runs, render

    selection = ROOT / "docs/reference/embedded-default-selection"
    printed = render(criterion_table(load_runs([selection], "val"), split="val")).strip().splitlines()
    page = (ROOT / "docs/embedded_default.md").read_text(encoding="utf-8")
    section = page[page.index("*The choice, seeds 0-4, 6 epochs*") :]
    start = section.index(printed[0])
    assert section[start:].splitlines()[: len(printed)] == printed


def _headline_means(frame) -> dict[str, str]:
    """'last / diagonal / dLP' of each method, as docs/reproducibility.md's table writes them."""
    from benchmark.reporting.criterion import criterion_table

    table = criterion_table(frame).set_index("method")
    return {m: f"{r['last']:.1f} / {r['diagonal']:.1f} / {r['dlp']:.1f}" for m, r in table.iterrows()}


def test_the_reproducibility_page_states_what_the_host_files_show():
    """Hosts compared in docs/reproducibility.md: the second Intel host's rows equal the
    published reference's; the AMD host's differ as the page says, and its means are the page's."""
    from benchmark.reporting.table import load_long_csv

    hosts = ROOT / "docs/reference/hosts"
    ours = load_long_csv(ROOT / "docs/reference/embedded-default/accuracy_long.csv", "test")
    keys = ["method", "seed", "stage", "eval_task", "kind"]

    def differences(other_csv):
        other = load_long_csv(hosts / other_csv, "test")
        merged = ours.merge(other, on=keys, suffixes=("", "_other"))
        assert len(merged) == len(ours) == len(other) == 600
        gap = (merged["accuracy"] - merged["accuracy_other"]).abs()
        return int((gap > 0).sum()), float(gap.max()), other

    page = (ROOT / "docs/reproducibility.md").read_text()
    differ, largest, _ = differences("intel-xeon-avx512-second-host-embedded-default.accuracy_long.csv")
    assert (differ, largest) == (0, 0.0) and "all 600 rows equal" in page
    differ, largest, amd = differences("amd-epyc-embedded-default.accuracy_long.csv")
    assert f"{differ} of 600 rows differ, by up to {largest:.1f} points" in page
    readme = (ROOT / "README.md").read_text()
    assert f"{differ} of 600 rows differ, by up to {largest:.1f} points" in readme
    for frame, host in ((ours, "| Intel (the published reference) |"), (amd, "| AMD EPYC (the earlier reference) |")):
        row = next(line for line in page.splitlines() if line.startswith(host))
        means = _headline_means(frame)
        assert f"| {means['finetune']} | {means['ldifs']} |" in row, (host, means)


def test_the_readme_drift_sentence_is_the_published_runs():
    """README's per-layer CKA numbers are those of docs/reference/embedded-default's feature_drift.csv."""
    import pandas as pd

    drift = pd.read_csv(ROOT / "docs/reference/embedded-default/feature_drift.csv")
    cka = drift[(drift.measure == "cka_pretrained") & drift.eval_task.isin(["textures", "colours"])]
    by_stage = cka.groupby(["method", "stage", "layer"]).value.mean()
    last = int(cka.stage.max())
    text = " ".join((ROOT / "README.md").read_text().split())
    ft, ld = (lambda layer, m="finetune": by_stage[(m, last, layer)]), (lambda layer: by_stage[("ldifs", last, layer)])
    expected = (
        f"fine-tuning's features keep a CKA of {ft('stem'):.2f} to the pre-trained ones at the stem and "
        f"{ft('layer4'):.2f} at the last block; LDIFS keeps {ld('stem'):.2f} and {ld('layer4'):.2f}. "
        f"Fine-tuning moves the last block first ({by_stage[('finetune', 1, 'layer4')]:.2f} after stage 1)"
    )
    assert expected in text


def test_the_publications_said_traceable_name_their_commit_and_no_local_path():
    """docs/reference/README.md's table: a folder it calls traceable records exactly the revision
    it names, with no uncommitted changes, and names the model and sweep file relative to the suite."""
    import yaml

    reference = ROOT / "docs/reference"
    rows = _table_rows(reference / "README.md", "| folder | made on")
    assert {folder.strip("`/") for folder in rows} == {
        p.name for p in reference.iterdir() if p.is_dir() and p.name not in ("hosts", "fingerprints")
    }
    traceable = {folder.strip("`/"): cells[1] for folder, cells in rows.items() if cells[2] == "yes"}
    assert len(traceable) >= 3
    for folder, revision in traceable.items():
        manifest = json.loads((reference / folder / "manifest.json").read_text(encoding="utf-8"))
        revisions = manifest.get("git_revisions") or [manifest["git_revision"]]
        assert all(r.startswith(revision) and not r.endswith("-dirty") for r in revisions), (folder, revisions)
        config = reference / folder / "config.yaml"
        if config.is_file():  # a run's (a sweep keeps its sweep.yaml): rerunnable without the publisher's folders
            assert yaml.safe_load(config.read_text(encoding="utf-8"))["results_dir"] == "results", folder
        for key in ("model", "sweep_file"):  # the shipped model "at benchmark/models/...", the sweep's file
            assert not re.search(r"(^|\s)/", str(manifest.get(key, ""))), (folder, key, manifest.get(key))


TUNED_NAMES = {
    "ewc": "EWC",
    "lwf": "LwF",
    "si": "SI",
    "mas": "MAS",
    "l2sp": "L2-SP",
    "ldifs": "LDIFS",
    "wise_ft": "WiSE-FT",
    "replay": "replay",
    "lora": "LoRA rank",
}


def test_the_tuned_choices_said_in_prose_are_the_published_selection():
    """'Chosen: EWC 300, ...' (embedded_default.md) and protocol.md's list are selection.csv's picks."""
    import pandas as pd

    selection = pd.read_csv(ROOT / "docs/reference/embedded-tuned/selection.csv")
    chosen = selection[selection["selected"] & selection["setting"].notna()]
    said = {
        base: f"{TUNED_NAMES[base]} {float(setting.split('=')[1]):g}"
        for base, setting in zip(chosen["base_method"], chosen["setting"])
    }
    assert set(said) == set(TUNED_NAMES)
    page = (ROOT / "docs/embedded_default.md").read_text(encoding="utf-8")
    sentence = " ".join(page[page.index("Chosen: ") :].split(". ")[0].split())
    assert all(text in sentence for text in said.values()), (sentence, said)
    protocol = (ROOT / "docs/protocol.md").read_text(encoding="utf-8")
    listed = " ".join(protocol[protocol.index("0-2, chosen on the validation split") :].split()[:40])
    for base in ("ewc", "si", "mas", "lwf"):
        assert said[base] in listed, (said[base], listed)


def test_the_tuned_sweeps_finetune_cells_are_the_headline_runs_seeds_0_to_2():
    """'Sweep cells train on exactly the images a plain run does' (embedded_default.md): the
    tuned sweep's fine-tuning rows on test equal seeds 0-2 of the published 5-seed run's."""
    from benchmark.reporting.table import load_long_csv

    keys = ["seed", "stage", "eval_task", "kind"]
    tuned = load_long_csv(ROOT / "docs/reference/embedded-tuned/accuracy_long.csv", "test")
    headline = load_long_csv(ROOT / "docs/reference/embedded-default/accuracy_long.csv", "test")
    cells = tuned[tuned["method"] == "finetune"].sort_values(keys)[keys + ["accuracy"]].reset_index(drop=True)
    plain = headline[(headline["method"] == "finetune") & headline["seed"].isin([0, 1, 2])]
    plain = plain.sort_values(keys)[keys + ["accuracy"]].reset_index(drop=True)
    assert len(cells) > 0 and cells.equals(plain)
