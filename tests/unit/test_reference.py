"""The reference is made from the tables that hold each list: docs/reference.md is what
`python3 -m utils.reference docs` prints, the scripts' flags are the run settings, and every
setting is read where its table says."""

import subprocess
import sys
from dataclasses import fields

from helpers import ROOT

from utils import reference, registry, results, settings
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
    parser = settings.script_parser("scripts/x.py", "x")
    flags = {action.dest for action in parser._actions if action.dest != "help"}
    assert flags == {s.name for s in settings.FLAGS}


def test_every_setting_is_read_somewhere_in_the_suite():
    code = "\n".join(p.read_text() for p in (ROOT / "utils").rglob("*.py") if p.name != "settings.py")
    code += (ROOT / "utils" / "drivers" / "session.sh").read_text() + (ROOT / "Makefile").read_text()
    for setting in settings.SETTINGS:
        assert f'"{setting.name}"' in code or f"{{{setting.name}" in code or setting.flag, setting.name


def test_settings_agree_with_the_rules_they_feed():
    # make all's floor on MAX_REPEATS is the bootstrap's minimum number of runs
    assert settings.BY_NAME["MAX_REPEATS"].parse(str(stats.MIN_RUNS)) == stats.MIN_RUNS


def test_blank_means_the_default_but_a_blank_path_is_refused_where_it_is_checked():
    assert settings.text("STEPS", {"STEPS": ""}) == "50" and settings.get("STEPS", {}) == 50
    assert settings.text("REPORT", {"REPORT": ""}) == "" and settings.text("REPORT", {}) == "REPORT.md"
    assert settings.given("TECHNIQUE", {"TECHNIQUE": "sgd"}) and not settings.given("TECHNIQUE", {})
