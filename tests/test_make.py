"""The Makefile: help and the reference it is made from, all going on past a failure,
init_results, reset, a new script."""

import re
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT, copy_suite, run_make, tiny_env

from utils import reference, registry, results, settings
from utils.registry import SCRIPTS
from utils.registry import known as known_techniques


def test_help_lists_every_target_technique_and_variable_with_its_default(results_file):
    proc = run_make("help", results_file=results_file)
    assert proc.returncode == 0 and proc.stdout == reference.help_text() + "\n"
    for name in reference.TARGETS:
        assert f"\n  {name:<14} {reference.TARGETS[name]}\n" in proc.stdout, name
    for setting in settings.SETTINGS:
        assert f"\n  {setting.name + '=' + setting.default:<28} {setting.help}\n" in proc.stdout, setting.name


def test_every_makefile_target_is_in_the_reference_and_back():
    makefile = (ROOT / "Makefile").read_text()
    phony = {name for line in re.findall(r"^\.PHONY: (.*)$", makefile, flags=re.M) for name in line.split()}
    phony = {name for name in phony if not name.startswith("$(")}
    assert phony | {"<technique>", "<a+b+c>"} == set(reference.TARGETS)  # the two made by rules, not named


def test_the_makefile_states_no_defaults_and_passes_settings_one_way():
    makefile = (ROOT / "Makefile").read_text()
    assert not re.findall(r"^[A-Z_]+ \?=", makefile, flags=re.M)  # every default is utils/settings.py's
    recipes = [line.strip() for line in makefile.splitlines() if line.startswith("\t@$(PYTHON) -m")]
    assert recipes and all(not re.search(r"\$\([A-Z_]+\)", line.replace("$(PYTHON)", "")) for line in recipes)


@pytest.mark.e2e
def test_all_goes_on_past_a_failing_technique(results_file, tmp_path):
    # a bitsandbytes whose 8-bit optimizer breaks mid-step: 8bit fails, the rest still run
    fake = tmp_path / "fake" / "bitsandbytes"
    (fake / "optim").mkdir(parents=True)
    (fake / "__init__.py").write_text("from bitsandbytes import optim\n")
    (fake / "optim" / "__init__.py").write_text(
        textwrap.dedent("""
        import torch
        class AdamW8bit(torch.optim.AdamW):
            def step(self, closure=None):
                raise RuntimeError("simulated kernel failure")
    """)
    )
    proc = run_make(
        "all", "TECHNIQUES=baseline 8bit fused", results_file=results_file, PYTHONPATH=str(tmp_path / "fake")
    )
    assert proc.returncode != 0
    summary = proc.stdout.split("=== summary")[1]
    assert "8bit: error: RuntimeError: simulated kernel failure" in summary
    assert "all: 2 ok, 0 skipped, 1 failed (8bit)" in summary
    statuses = results.read(results_file).drop_duplicates("technique").set_index("technique")["status"].to_dict()
    assert statuses == {"baseline": "ok", "8bit": "error", "fused": "ok"}


def test_init_results_and_reset_keep_a_backup(results_file, tmp_path):
    assert run_make("init_results", results_file=results_file).returncode == 0
    assert results_file.read_text() == results.HEADER
    results.append_rows(results_file, [{**{c: "" for c in results.COLUMNS}, "technique": "x", "status": "ok"}])
    before = results_file.read_bytes()
    proc = run_make("reset", f"PLOTS_DIR={tmp_path / 'plots'}", results_file=results_file)
    assert proc.returncode == 0, proc.stderr
    backups = list(tmp_path.glob("results.csv.*.bak"))
    assert not results_file.exists() and len(backups) == 1 and backups[0].read_bytes() == before


@pytest.mark.e2e
def test_repeats_run_interleaved_and_are_labelled(results_file):
    proc = run_make("all", "TECHNIQUES=baseline fused", "REPEATS=2", results_file=results_file, STEPS="2")
    assert proc.returncode == 0, proc.stderr
    runs = results.read(results_file).drop_duplicates("run_id")
    assert list(zip(runs["technique"], runs["repeat"])) == [
        ("baseline", 0),
        ("fused", 0),
        ("baseline", 1),
        ("fused", 1),
    ]
    proc = run_make("all", "REPEATS=0", results_file=results_file)
    assert proc.returncode == 2 and "REPEATS must be a positive integer" in proc.stderr


def test_the_technique_list_is_the_scripts_folder(results_file):
    names = known_techniques()
    assert names[0] == "baseline" and sorted(names) == sorted(p.stem for p in SCRIPTS.glob("*.py"))
    help_text = run_make("help", results_file=results_file).stdout
    for name in names:  # each with the first line of its script's docstring
        summary = (SCRIPTS / f"{name}.py").read_text().split("\n")[0].removeprefix('"""').split(": ", 1)[1]
        assert f" {name} " in help_text and summary in help_text, name
    assert registry.selected() == names  # make all's default: every script, baseline first


@pytest.mark.e2e
def test_a_new_script_is_all_it_takes(tmp_path):
    # a copy of the suite with one more script: make help, make <name> and make all know it
    baseline = copy_suite(tmp_path)
    dummy = baseline.replace('"""baseline:', '"""dummy: a made-up technique.', 1)
    (tmp_path / "scripts" / "dummy.py").write_text(dummy)
    results_file = tmp_path / "results.csv"

    def make(*args):
        cmd = ["make", "--no-print-directory", *args, f"PYTHON={sys.executable}"]
        return subprocess.run(cmd, env=tiny_env(results_file), capture_output=True, text=True, cwd=tmp_path)

    assert "dummy          a made-up technique." in make("help").stdout
    assert make("dummy").returncode == 0
    proc = make("all", "TECHNIQUES=dummy")
    assert proc.returncode == 0 and "dummy: ok" in proc.stdout, proc.stderr
    assert set(results.read(results_file)["technique"]) == {"dummy"}
