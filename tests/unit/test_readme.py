"""The README tells a newcomer what the code has: it stays short, its techniques table is the
scripts folder, its links lead somewhere, and a script runs on its own as it says."""

import re
import subprocess
import sys

import pandas as pd
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


def _anchors(text):
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_every_anchor_names_a_heading_of_the_page_it_links():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target, anchor in re.findall(r"\]\(([^)#:]*)#([^)]+)\)", page.read_text()):
            linked = page.parent / target if target else page
            if linked.suffix == ".md":
                assert anchor in _anchors(linked.read_text()), f"{page.name}: {target}#{anchor}"


def test_the_docs_index_lists_every_page_once():
    index = (ROOT / "docs" / "README.md").read_text()
    listed = re.findall(r"^\| \[([\w.]+\.md)\]\(", index, flags=re.M)
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "README.md")
    assert sorted(listed) == pages


RESULTS = ROOT / "docs" / "results" / "amd_epyc_2_threads"


def _table(text, first_header):
    """The markdown table whose header row starts with `first_header`: a list of {column: cell}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def test_the_readmes_results_are_the_committed_reports_from_a_commit_of_this_history():
    shown = _table(README, "| technique | runs | median ms |")
    report = {row["technique"]: row for row in _table((RESULTS / "REPORT.md").read_text(), "| technique | runs |")}
    assert [row["technique"] for row in shown] == list(report)  # every row, in the report's order
    for row in shown:
        assert row == {column: report[row["technique"]][column] for column in row}, row["technique"]
    shas = set(pd.read_csv(RESULTS / "results.csv")["git_sha"])
    assert len(shas) == 1 and "+dirty" not in next(iter(shas))
    if (ROOT / ".git").exists():  # a clone: the commit that ran is in its history
        sha = next(iter(shas))
        subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=ROOT, check=True)
