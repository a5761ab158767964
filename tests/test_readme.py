"""The README documents what the code has: every column, technique and make variable."""

import re

from conftest import ROOT

from utils import results
from utils.run_all import known_techniques

README = (ROOT / "README.md").read_text()


def test_every_column_is_in_the_column_reference():
    section = README.split("\n## results.csv\n")[1].split("\n## ")[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.M))
    assert documented == set(results.COLUMNS)


def test_the_techniques_table_is_the_scripts_folder():
    section = README.split("\n## The techniques\n")[1].split("\n## ")[0]
    described = re.findall(r"^\| `([\w-]+)` \|", section, flags=re.M)
    assert sorted(described) == sorted(known_techniques())  # every script once, nothing else


def test_every_make_variable_is_documented():
    variables = set(re.findall(r"^([A-Z_]+) \?=", (ROOT / "Makefile").read_text(), flags=re.M))
    for name in variables - {"VENV"}:
        assert f"`{name}" in README, name
