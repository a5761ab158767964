"""The Makefile: help and the reference it is made from, no defaults of its own, init_results,
reset, the technique list being the scripts folder."""

import re

from helpers import ROOT, run_make

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


def test_init_results_and_reset_keep_a_backup(results_file, tmp_path):
    assert run_make("init_results", results_file=results_file).returncode == 0
    assert results_file.read_text() == results.HEADER
    results.append_rows(results_file, [{**{c: "" for c in results.COLUMNS}, "technique": "x", "status": "ok"}])
    before = results_file.read_bytes()
    proc = run_make("reset", f"PLOTS_DIR={tmp_path / 'plots'}", results_file=results_file)
    assert proc.returncode == 0, proc.stderr
    backups = list(tmp_path.glob("results.csv.*.bak"))
    assert not results_file.exists() and len(backups) == 1 and backups[0].read_bytes() == before


def test_the_technique_list_is_the_scripts_folder(results_file):
    names = known_techniques()
    assert names[0] == "baseline" and sorted(names) == sorted(p.stem for p in SCRIPTS.glob("*.py"))
    help_text = run_make("help", results_file=results_file).stdout
    for name in names:  # each with the first line of its script's docstring
        summary = (SCRIPTS / f"{name}.py").read_text().split("\n")[0].removeprefix('"""').split(": ", 1)[1]
        assert f" {name} " in help_text and summary in help_text, name
    assert registry.selected(()) == names  # make all's default: every script, baseline first
