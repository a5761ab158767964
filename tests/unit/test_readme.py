"""The README tells a newcomer what the code has: it stays short, its techniques table is the
scripts folder, its links lead somewhere, and a script runs on its own as it says."""

import re
import subprocess
import sys

from helpers import ROOT

from utils.registry import known as known_techniques

README = (ROOT / "README.md").read_text()


def test_the_readme_is_the_story_and_the_reference_lives_in_docs():
    assert README.count("\n") <= 250
    assert "## Two commands" in README and "make all" in README and "make test" in README


def test_the_techniques_table_is_the_scripts_folder():
    section = README.split("\n## The techniques\n")[1].split("\n## ")[0]
    described = re.findall(r"^\| `([\w-]+)` \|", section, flags=re.M)
    assert sorted(described) == sorted(known_techniques())  # every script once, nothing else


def test_every_link_leads_to_a_file_of_the_repository():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        assert (ROOT / target).exists(), target


def test_a_script_runs_on_its_own_from_anywhere(tmp_path):
    # no sys.path edit in the script: the venv's path (or make's PYTHONPATH) finds utils
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bf16.py"), "--help"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stdout.split())  # argparse wraps its help
    assert "--steps STEPS" in said and "[SUITE_STEPS, default 50]" in said


def test_every_link_of_the_docs_pages_leads_somewhere():
    for page in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_the_docs_index_lists_every_page_once():
    index = (ROOT / "docs" / "README.md").read_text()
    listed = re.findall(r"^\| \[([\w.]+\.md)\]\(", index, flags=re.M)
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "README.md")
    assert sorted(listed) == pages
