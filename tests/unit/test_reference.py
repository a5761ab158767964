"""The reference is made from the tables that hold each list: docs/reference.md is what
`python3 -m utils.reference docs` prints, the scripts' flags are the run settings, and every
setting is read where its table says."""

import os
import subprocess
import sys
from dataclasses import fields

import pytest
from helpers import ROOT

from utils import checks, reference, registry, results, settings
from utils.analysis import stats
from utils.measure.config import RunConfig


def test_docs_reference_is_generated_from_the_tables():
    printed = subprocess.run([sys.executable, "-m", "utils.reference", "docs"], capture_output=True, text=True,
                             cwd=ROOT, check=True).stdout
    assert printed == reference.docs_text()
    stale = "docs/reference.md is stale: python3 -m utils.reference docs > docs/reference.md"
    assert (ROOT / "docs" / "reference.md").read_text() == printed, stale


def test_the_reference_holds_every_technique_setting_column_and_target():
    text = reference.docs_text()
    for name in [*registry.known(), *results.COLUMNS, *reference.TARGETS]:
        assert f"| `{name}` |" in text, name
    for setting in settings.SETTINGS:
        assert f"| `{setting.name}` | {setting.default or '(blank)'} |" in text, setting.name


def test_every_script_flag_is_a_run_setting_and_a_field_of_the_run_config():
    config_fields = {f.name.upper() for f in fields(RunConfig)} - {"TECHNIQUE", "WORLD", "VOCAB_SIZE"}  # the model's
    assert {s.name for s in settings.FLAGS} == config_fields
    parser = settings.script_parser("scripts/x.py")
    flags = {action.dest for action in parser._actions if action.dest != "help"}
    assert flags == {s.name for s in settings.FLAGS}


def test_every_setting_is_read_somewhere_in_the_suite():
    code = "\n".join(p.read_text() for p in (ROOT / "utils").rglob("*.py") if p.name != "settings.py")
    code += (ROOT / "utils" / "drivers" / "session.sh").read_text() + (ROOT / "Makefile").read_text()
    for s in settings.SETTINGS:  # its field (given.steps), the text it is read as, or the Make variable
        read = (f".{s.field}" in code or f'"{s.name}"' in code or f"SUITE_{s.name}" in code or f"$({s.name})" in code)
        assert read or s.flag, s.name


def test_settings_agree_with_the_rules_they_feed():
    # make all's floor on MAX_REPEATS is the bootstrap's minimum number of runs
    assert settings.BY_NAME["MAX_REPEATS"].parse(str(stats.MIN_RUNS)) == stats.MIN_RUNS


def test_blank_means_the_default_but_a_blank_path_is_refused_where_it_is_checked():
    assert settings.read({"SUITE_STEPS": ""}).steps == 50 and settings.read({}).steps == 50
    assert settings.read({"SUITE_REPORT": ""}).report == "" and settings.read({}).report == "REPORT.md"
    assert "TECHNIQUE" in settings.read({"SUITE_TECHNIQUE": "sgd"}).given
    assert not settings.read({"SUITE_TECHNIQUE": ""}).given


def test_only_the_namespaced_environment_is_read_and_a_stray_setting_is_refused():
    shell = {"T": "lion", "DEVICE": "cuda", "PORT": "x", "A": "1", "STEPS": "0"}  # a user's shell, not settings
    assert settings.read(shell) == settings.read({})
    assert settings.read({"SUITE_T": "lion", "SUITE_STEPS": "7"}).steps == 7
    with pytest.raises(checks.BadInput, match="^STESP is not a setting [(]did you mean STEPS[?][)]"):
        settings.read({"SUITE_STESP": "7"})
    # a script's flags over the environment's, each typed as its field says
    given = settings.read({"SUITE_STEPS": "7", "SUITE_BATCH": "3"}, argv=["--steps", "9"])
    assert (given.steps, given.batch, given.seq, given.given) == (9, 3, None, {"STEPS", "BATCH"})
    assert settings.Settings.__annotations__["batch"] == int | None


def test_a_setting_reaches_the_python_side_namespaced_from_makes_command_line_only(tmp_path):
    probe = tmp_path / "probe.mk"  # the Makefile's own export line, with a target that prints the environment
    export = next(line for line in (ROOT / "Makefile").read_text().splitlines() if "SUITE_$v" in line)
    probe.write_text(f"{export}\nshow:\n\t@env\n")
    env = {**{k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}, "STEPS": "3", "T": "lion"}
    shown = subprocess.run(["make", "-s", "-f", str(probe), "show", "MODEL=tiny", "GRID_MODELS=tiny lstm"], env=env,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert {"SUITE_MODEL=tiny", "SUITE_GRID_MODELS=tiny lstm"} <= set(shown)
    assert not {"SUITE_STEPS=3", "SUITE_T=lion"} & set(shown)  # the shell's variables are not settings
