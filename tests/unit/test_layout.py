"""The package's layout holds: imports run one way, the report and plots never load torch,
the stdlib-only modules stay so, the scripts are the baseline plus their own lines, no
module or function outgrows its job, no name speaks in the project's history, and every test
is in tests/unit/ (nothing trains in a subprocess, no torchrun, no sleep) or tests/e2e/."""

import ast
import re
import subprocess
import sys

import pytest
from helpers import ROOT

from utils import registry

UTILS = ROOT / "utils"
# package (or leaf module) -> the utils packages it may import, besides itself
ALLOWED = {
    "checks": set(),
    "requirements": set(),  # stdlib only: it runs before anything is known to import
    "devices": set(),
    "settings": {"checks", "devices", "catalog"},  # GPU= and COMPILE_MODE= are checked against their tables
    "catalog": set(),  # the techniques as data: stdlib, imports nothing
    "registry": {"checks", "catalog"},
    "results": {"checks"},
    "reference": {"models", "registry", "settings", "results", "catalog", "requirements"},
    "models": {"checks"},
    "techniques": {"models", "registry", "checks", "catalog"},
    "measure": {"techniques", "models", "results", "settings", "checks", "devices", "registry", "requirements",
                "catalog"},
    "plan": {"measure", "techniques", "models", "results", "settings", "checks", "registry", "devices", "catalog"},
    "analysis": {"results", "models", "checks", "catalog"},
    "plots": {"analysis", "results", "checks", "settings", "registry", "catalog"},
    "report": {"analysis", "plots", "results", "checks", "settings", "devices", "catalog"},
    "__init__": set(),  # the package's map: a docstring
}
# make tune: the planner over the techniques' space, and (VERIFY) the runner's fresh processes
ALLOWED["tune"] = ALLOWED["plan"] | {"plan", "drivers", "analysis"}
ALLOWED["units"] = set()  # MiB and GiB, once: any package may use them
for allowed in ALLOWED.values():
    allowed.add("units")
# commands over many runs: anything; among themselves only the runner, all's rounds, maxbatch's search and
# gpu_check's own modules (a package within drivers), none of them a cycle
ALLOWED["drivers"] = set(ALLOWED) - {"drivers", "__init__"}
MODULES = sorted(p for p in UTILS.rglob("*.py"))


def _package(path):
    parts = path.relative_to(UTILS).with_suffix("").parts
    return parts[0]


def _imported(path):
    """The utils packages `path` imports, anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "utils" else [])
        found |= {name.split(".")[1] for name in names if name.startswith("utils.") and name.count(".") >= 1}
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path):
    package = _package(path)
    strays = _imported(path) - ALLOWED[package] - {package}
    assert not strays, f"{package} may not import {strays}"


# the commands: only these parse the settings (utils.settings.read) and pass them down
ENTRY_POINTS = {"utils/reference.py", "utils/measure/train.py"}
# the environment read where it is no setting of the suite's: torchrun's ranks, NVIDIA's TF32 overrides
# (a check of the process), the goals make was asked for (before anything is known to import)
READS_ENVIRONMENT = {"utils/settings.py", "utils/measure/parallel.py", "utils/techniques/stages.py",
                     "utils/requirements.py"}


def _entry_point(path):
    name = str(path.relative_to(ROOT))
    return name in ENTRY_POINTS or path.name == "__main__.py" or name.startswith("utils/drivers/")


def test_only_the_entry_points_import_the_settings_and_nothing_else_reads_the_environment():
    importers = {str(p.relative_to(ROOT)) for p in MODULES if "settings" in _imported(p)} - {"utils/settings.py"}
    assert importers == {str(p.relative_to(ROOT)) for p in MODULES if _entry_point(p) and "settings" in _imported(p)}
    assert {"utils/measure/train.py", "utils/plan/__main__.py", "utils/drivers/all.py"} <= importers
    readers = {str(p.relative_to(ROOT)) for p in MODULES if re.search(r"os\.environ|os\.getenv", p.read_text())}
    assert {r for r in readers if not _entry_point(ROOT / r)} <= READS_ENVIRONMENT


def test_drivers_share_only_the_runner_the_rounds_and_the_search():
    shared = {"runner", "all", "maxbatch", "gpu_check"}
    for path in (UTILS / "drivers").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("utils.drivers"):
                parts = node.module.split(".")[2:] or [alias.name for alias in node.names]
                assert parts[0] in shared, f"{path.relative_to(ROOT)} imports {node.module}"


def test_the_layout_names_every_package_and_leaf():
    assert {_package(p) for p in MODULES} == set(ALLOWED)


def _loaded_after(*modules):
    code = f"import sys; import {', '.join(modules)}; print(' '.join(sorted(sys.modules)))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              cwd=ROOT).stdout.split())


def test_report_plots_and_analysis_never_import_torch():
    loaded = _loaded_after("utils.report", "utils.plots", "utils.analysis.stats", "utils.analysis.grid",
                           "utils.plots.memory", "utils.plots.scaling", "utils.report.__main__", "utils.plots.__main__")
    assert "torch" not in loaded and "pandas" in loaded


def test_what_make_help_reset_and_a_single_run_need_is_the_standard_library():
    loaded = _loaded_after("utils.reference", "utils.drivers.files", "utils.drivers.one", "utils.models")
    assert not {"torch", "numpy", "pandas"} & loaded


def test_every_package_says_its_job_and_what_it_may_import():
    for init in UTILS.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "Job:" in doc and "May import" in doc, init


def test_no_module_or_function_outgrows_its_job():
    for path in MODULES:
        lines = path.read_text().count("\n")
        assert lines <= 300, f"{path}: {lines} lines"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno < 60, f"{path}: {node.name}"


@pytest.mark.parametrize("name", registry.known())
def test_each_script_is_the_baseline_plus_its_own_lines(name):
    text = registry.script(name).read_text()
    tree = ast.parse(text)
    imports = [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert imports == ["from utils import techniques as t", "from utils.measure.train import main"], imports
    assert "sys.path" not in text and [n.name for n in tree.body if isinstance(n, ast.FunctionDef)] == ["setup"]
    assert ast.get_docstring(tree).startswith(f"{name}: ")


HISTORY = re.compile(r"\bseeds? 00\d|\bissue \d+|\bissues? #?\d{1,3}\b", re.IGNORECASE)


def test_no_name_speaks_in_the_projects_history():
    texts = [*MODULES, *(ROOT / "scripts").glob("*.py"), ROOT / "Makefile", ROOT / "README.md",
             *(ROOT / "docs").rglob("*.md"), *(ROOT / "tests").rglob("*.py")]
    said = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in texts for m in HISTORY.finditer(p.read_text())
            if p.name != "test_layout.py"]
    assert not said


# The unit tests that start make, a script or a target's module, each for something that trains nothing
# and ends at once ("module::function" -> what it starts). Anything else that does belongs in tests/e2e/.
NON_TRAINING = {
    "test_make.py::test_help_lists_every_target_technique_and_variable_with_its_default": "make help: prints text",
    "test_make.py::test_the_technique_list_is_the_scripts_folder": "make help",
    "test_make.py::test_init_results_and_reset_keep_a_backup": "make init_results, reset: file moves, stdlib only",
    "test_report.py::test_make_report_prints_the_table": "make report of synthetic rows: tables, figures",
    "test_bad_input.py::test_bad_settings_through_make": "each row refused at its settings, before any model",
    "test_bad_input.py::test_cuda_asked_for_on_a_machine_without_it": "DEVICE=cuda refused before any model",
    "test_gpu_refusals.py::test_every_target_checks_the_given_interpreter_first": "make -n: prints the recipes",
    "test_readme.py::test_a_script_runs_on_its_own_from_anywhere": "scripts/bf16.py --help: prints the flags",
    "test_gpu_check.py::test_on_this_cpu_it_says_one_line_and_exits_2": "gpu_check without a GPU: one line, exit 2",
    "test_finetune_check.py::test_on_this_cpu_it_says_one_line_and_exits_2": "finetune_check without a GPU: the same",
    "test_reference.py::test_a_setting_reaches_the_python_side_namespaced_from_makes_command_line_only":
        "make -f probe.mk: prints its environment",
}
SUBPROCESS = {f"subprocess.{name}" for name in ("run", "Popen", "call", "check_call", "check_output")}
# what make's targets run besides make itself and scripts/: their modules
TARGET_MODULES = ("utils.drivers", "utils.measure.train", "utils.plan")


def _starts_a_target(command):
    words = [n.value for n in ast.walk(command) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return any(w == "make" or "scripts" in w or w.startswith(TARGET_MODULES) for w in words)


def _e2e_only(node):
    """What `node` does that keeps a test out of tests/unit/: ("starts", what) for a command that may train
    (allowed where NON_TRAINING says it does not), ("never", what) for torchrun or a sleep."""
    if isinstance(node, ast.ImportFrom) and node.module == "time" and "sleep" in {a.name for a in node.names}:
        return "never", "time.sleep"
    if isinstance(node, ast.Attribute) and node.attr == "sleep" and ast.unparse(node.value) == "time":
        return "never", "time.sleep"
    if isinstance(node, ast.Constant) and node.value in ("torchrun", "torch.distributed.run"):
        return "never", node.value
    if isinstance(node, (ast.Import, ast.ImportFrom)) and "torch.distributed.run" in ast.unparse(node):
        return "never", "torch.distributed.run"
    if not isinstance(node, ast.Call):
        return None
    name = ast.unparse(node.func)
    if name in ("run_make", "run_script"):
        return "starts", name
    if name in SUBPROCESS:
        command = node.args[0] if node.args else None
        if not isinstance(command, (ast.List, ast.Tuple)):  # a command built elsewhere: unknown, so it counts
            return "starts", f"{name} of a command not written out in the call"
        if _starts_a_target(command):
            return "starts", f"{name}({ast.unparse(command)})"
    return None


def test_the_tests_are_in_unit_or_e2e_and_the_unit_ones_train_nothing_in_a_subprocess():
    assert not list((ROOT / "tests").glob("test_*.py")), "a test module belongs in tests/unit/ or tests/e2e/"
    found = {}  # "module::function" -> [(kind, what), ...]
    for path in sorted((ROOT / "tests" / "unit").glob("*.py")):
        if path.name == "test_layout.py":  # names what it looks for
            continue
        for top in ast.parse(path.read_text()).body:
            where = f"{path.name}::{getattr(top, 'name', '<module>')}"
            found.setdefault(where, []).extend(seen for node in ast.walk(top) if (seen := _e2e_only(node)))
    strays = {where: [what for kind, what in seen if kind == "never" or where not in NON_TRAINING]
              for where, seen in found.items()}
    assert not {where: whats for where, whats in strays.items() if whats}, "these belong in tests/e2e/"
    starting = {where for where, seen in found.items() if any(kind == "starts" for kind, _ in seen)}
    assert set(NON_TRAINING) <= starting, "NON_TRAINING names a test that no longer starts anything"
