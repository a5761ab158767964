"""Bad input: one line naming the problem, a non-zero exit, and results.csv kept intact.

Each class of bad input is a table: every numeric variable out of range, every path-like
variable that is a folder, missing, unwritable or malformed, and results files of every
shape against every command that reads them. Most rows call the commands' entry points in
this process (fast); a few go through make, to show the same line and status end to end.
"""

import sys
from pathlib import Path

import pytest
import torch
from helpers import one_line, rows_of, run_make, run_script, set_env, tiny_env

from utils import checks, registry, results, settings
from utils import techniques as t
from utils.drivers import all as run_all
from utils.drivers import files, profile
from utils.measure import config, train
from utils.models import build_model
from utils.plots import __main__ as plots_command
from utils.report import __main__ as report_command


@pytest.mark.parametrize(
    "args, expected",
    [
        (["baseline", "STEPS=abc"], "baseline: error: STEPS must be a positive integer, got 'abc'"),
        (["all", "TECHNIQUES=baseline nope"], "unknown technique nope"),
        (["nope"], "unknown target or technique 'nope' (techniques:"),
        (["torch_compile"], "unknown target or technique 'torch_compile' (did you mean compile?)"),
    ],
)
def test_bad_settings_through_make(existing, args, expected):
    results_file, before = existing
    proc = run_make(*args, results_file=results_file)
    assert proc.returncode == 2
    assert expected in one_line(proc.stderr)
    assert results_file.read_bytes() == before


@pytest.mark.parametrize(
    "env, said",
    [
        ({"BATCH": "-4"}, "BATCH must be a positive integer"),
        ({"MODEL": "gpt5"}, "unknown MODEL 'gpt5'"),
        ({"DEVICE": "tpu"}, "DEVICE must be one of auto, cpu, cuda, got 'tpu'"),
        ({"DATA": "/no/such/file.txt"}, "DATA=/no/such/file.txt: no such file"),
        ({"COMPILE_MODE": "fastest"}, "COMPILE_MODE must be one of default, reduce-overhead"),
        ({"TECHNIQUES": "baseline nope"}, "unknown technique nope; known: baseline "),
        ({"EVAL_EVERY": "99"}, "EVAL_EVERY=99 is larger than STEPS=50"),
    ],
)
def test_bad_settings_of_make_all_stop_before_any_run(existing, monkeypatch, capsys, env, said):
    results_file, before = existing
    set_env(monkeypatch, "RESULTS_FILE", str(results_file))
    for name, value in env.items():
        set_env(monkeypatch, name, value)
    _said_one_line(capsys, run_all.main(), "all: error:", said)
    assert results_file.read_bytes() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_asked_for_on_a_machine_without_it(existing):
    results_file, before = existing
    proc = run_script("baseline", results_file, DEVICE="cuda")
    assert proc.returncode == 2 and "sees no CUDA GPU" in one_line(proc.stderr)
    assert results_file.read_bytes() == before


def test_out_of_memory_is_recorded_and_exits_non_zero(existing, monkeypatch, capsys):
    results_file, before = existing
    set_env(monkeypatch, "RESULTS_FILE", str(results_file))

    def setup(run):
        t.strict_fp32(run)
        t.adamw(run)

        def oom(*args):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        run.train_model = oom

    with pytest.raises(SystemExit) as exit_:
        train.main(setup, name="oomtest", argv=["--steps", "2", "--model", "tiny", "--device", "cpu"])
    assert exit_.value.code == train.EXIT_OOM
    assert "oomtest: oom: out of memory at B=4 T=128" in one_line(capsys.readouterr().err)
    after = results_file.read_bytes()
    assert after.startswith(before)  # earlier rows untouched; one status row added
    row = results.read(results_file).iloc[-1]
    assert (row["technique"], row["status"]) == ("oomtest", "oom") and "Tried to allocate" in row["reason"]


def _said_one_line(capsys, code, *words):
    """The command exited with status 2 and said one line holding each of `words`."""
    err = capsys.readouterr().err
    assert code == checks.EXIT_BAD_INPUT, err
    line = one_line(err)
    assert all(word in line for word in words), line


SCRIPT_NUMBERS = [  # flag, value, what the line says
    ("steps", "0", "STEPS must be a positive integer"),
    ("steps", "1.5", "STEPS must be a positive integer"),
    ("warmup", "-1", "WARMUP must be an integer >= 0"),
    ("batch", "0", "BATCH must be a positive integer"),
    ("seq", "-3", "SEQ must be a positive integer"),
    ("seed", "-1", "SEED must be an integer from 0"),
    ("seed", str(2**64), "SEED must be an integer from 0 to 18446744073709551615"),
    ("lr", "0", "LR must be a positive number"),
    ("lr", "inf", "LR must be a positive number"),
    ("lr", "nan", "LR must be a positive number"),
    ("peak-tflops", "0", "PEAK_TFLOPS must be a positive number"),
    ("peak-tflops", "1e999", "PEAK_TFLOPS must be a positive number"),
    ("repeat", "-1", "REPEAT must be an integer >= 0"),
]


@pytest.mark.parametrize("flag, value, said", SCRIPT_NUMBERS)
def test_every_numeric_setting_of_a_run_is_range_checked(results_file, flag, value, said):
    with pytest.raises(config.ConfigError, match=said):
        config.load("baseline", settings.read(argv=[f"--{flag}", value, "--device", "cpu", "--results-file",
                                                    str(results_file)]))
    assert not results_file.exists()


ALL_NUMBERS = [  # make all's own settings
    ({"REPEATS": "0"}, "REPEATS must be a positive integer"),
    ({"CI_HALF_WIDTH": "0"}, "CI_HALF_WIDTH must be a number between 0 and 1"),
    ({"CI_HALF_WIDTH": "1.5"}, "CI_HALF_WIDTH must be a number between 0 and 1"),
    ({"CI_HALF_WIDTH": "nan"}, "CI_HALF_WIDTH must be"),
    ({"MAX_REPEATS": "2"}, "MAX_REPEATS must be an integer >= 3"),
    ({"MAX_REPEATS": "many"}, "MAX_REPEATS must be"),
    ({"TIME_BUDGET_MIN": "0"}, "TIME_BUDGET_MIN must be a positive number"),
    ({"TIME_BUDGET_MIN": "inf"}, "TIME_BUDGET_MIN must be"),
    ({"CI_HALF_WIDTH": "0.02", "REPEATS": "5", "MAX_REPEATS": "4"}, "MAX_REPEATS=4 is below REPEATS=5"),
]


@pytest.mark.parametrize("env, said", ALL_NUMBERS)
def test_every_setting_of_make_all_is_range_checked(monkeypatch, env, said):
    for name, value in env.items():
        set_env(monkeypatch, name, value)
    with pytest.raises(checks.BadInput, match=said):
        run_all.repeat_settings(settings.read())


@pytest.mark.parametrize(
    "name, value",
    [("BUDGET_GIB", "0"), ("BUDGET_GIB", "nan"), ("PEAK_TFLOPS", "-1"), ("PEAK_TFLOPS", "inf"), ("TARGET_LOSS", "x")],
)
def test_every_numeric_setting_of_the_report_is_range_checked(existing, tmp_path, monkeypatch, capsys, name, value):
    results_file, before = existing
    _set(monkeypatch, RESULTS_FILE=results_file, REPORT=tmp_path / "R.md", PLOTS_DIR=tmp_path / "p", **{name: value})
    _said_one_line(capsys, report_command.main(), f"{name} must be a positive number, got {value!r}")
    assert results_file.read_bytes() == before and not (tmp_path / "R.md").exists() and not (tmp_path / "p").exists()


WRITERS, READERS, PLOTTERS = ("technique", "init_results"), ("report", "plots", "reset"), ("report", "plots", "profile")
PATH_CASES = [  # commands, variable, bad value ({tmp}: a folder holding a file f and a folder d), what the line says
    *((c, "RESULTS_FILE", "{tmp}/d", "RESULTS_FILE={tmp}/d is a folder") for c in WRITERS + READERS),
    *((c, "RESULTS_FILE", "{tmp}/nodir/r.csv", "folder {tmp}/nodir does not exist") for c in WRITERS),
    *((c, "RESULTS_FILE", "/proc/r.csv", "cannot write in folder /proc") for c in WRITERS),  # even root cannot
    *(
        (c, "RESULTS_FILE", "{tmp}/nodir/r.csv", "RESULTS_FILE={tmp}/nodir/r.csv does not exist yet")
        for c in ("report", "plots")
    ),
    ("report", "REPORT", "{tmp}/d", "REPORT={tmp}/d is a folder"),
    ("report", "REPORT", "{tmp}/nodir/R.md", "folder {tmp}/nodir does not exist"),
    ("report", "REPORT", "/proc/R.md", "cannot write in folder /proc"),
    ("report", "REPORT", "", "REPORT is empty"),
    *((c, "PLOTS_DIR", "{tmp}/f", "PLOTS_DIR={tmp}/f is a file") for c in PLOTTERS),
    *((c, "PLOTS_DIR", "{tmp}/f/sub", "cannot be made: {tmp}/f is a file") for c in PLOTTERS),
    *((c, "PLOTS_DIR", "/proc/plots", "cannot write in folder /proc") for c in PLOTTERS),
    *((c, "PLOTS_DIR", "", "PLOTS_DIR is empty") for c in PLOTTERS),
    *((c, "PLOTSPREFIX", "a/b_", "holds a '/'") for c in PLOTTERS),
    *((c, "PLOTSPREFIX", "x" * 101, "not usable in a file name") for c in PLOTTERS),
    *((c, "PLOTSPREFIX", "tab\t", "not usable in a file name") for c in PLOTTERS),
    ("technique", "SUMMARY_FILE", "{tmp}/d", "SUMMARY_FILE={tmp}/d is a folder"),
    ("technique", "SUMMARY_FILE", "{tmp}/nodir/s.json", "folder {tmp}/nodir does not exist"),
    ("technique", "DATA", "{tmp}/d", "DATA={tmp}/d is a folder"),
    ("technique", "DATA", "{tmp}/missing.txt", "DATA={tmp}/missing.txt: no such file"),
    (
        "technique",
        "DATA",
        "{tmp}/f",
        "DATA={tmp}/f: its training split holds 3 tokens, too few for one batch",
    ),  # found before training
]


def _set(monkeypatch, **values):
    for name, value in values.items():
        set_env(monkeypatch, name, str(value))


def _run_command(command, values, monkeypatch):
    """Run `command`'s entry point in this process with these settings; return its exit status."""
    _set(monkeypatch, **values)
    if command == "technique":  # the checks a script makes before it builds anything
        try:
            config.load("baseline", settings.read(argv=["--device", "cpu", "--model", "tiny"]))
        except checks.BadInput as err:
            print(f"baseline: error: {err}", file=sys.stderr)
            return checks.EXIT_BAD_INPUT
        return 0
    if command in ("init_results", "reset"):
        return files.main([command])
    if command in ("report", "plots", "compare"):
        if command == "report":
            return report_command.main()
        return plots_command.main(["--compare"] if command == "compare" else [])
    set_env(monkeypatch, "TECHNIQUE", "baseline")
    return profile.main()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="uses Linux's /proc as a folder nobody can write in")
@pytest.mark.parametrize("command, variable, value, said", PATH_CASES)
def test_every_path_setting_of_every_command_is_checked_before_any_work(
    existing, tmp_path, capsys, monkeypatch, command, variable, value, said
):
    results_file, before = existing
    (tmp_path / "f").write_text("abc\n")
    (tmp_path / "d").mkdir()
    good = {
        "RESULTS_FILE": results_file,
        "REPORT": tmp_path / "R.md",
        "PLOTS_DIR": tmp_path / "plots",
        "PLOTSPREFIX": "",
        "DATA": "coinflip",
    }
    code = _run_command(command, {**good, variable: value.format(tmp=tmp_path)}, monkeypatch)
    _said_one_line(capsys, code, said.format(tmp=tmp_path))
    assert results_file.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f", "results.csv"]  # nothing written


def test_reset_without_a_results_file_only_says_so(tmp_path, monkeypatch, capsys):
    _set(monkeypatch, RESULTS_FILE=tmp_path / "r.csv", PLOTS_DIR=tmp_path / "plots")
    assert files.main(["reset"]) == 0 and "reset: no " in capsys.readouterr().out


# the header of the first version of results.csv (no repeat, phases, tflops, mfu, flops_per_token, peak_tflops)
OLDEST_COLUMNS = (
    "run_id timestamp_utc technique status reason phase step step_ms tokens_per_s loss peak_alloc_mib "
    "peak_reserved_mib peak_rss_mib model n_params batch seq data dtype attention optimizer fused compiled "
    "checkpointing lr seed device driver cuda torch git_sha host"
).split()


def _csv(columns, rows):
    lines = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def _ran(*names):
    return [row for name in names for row in rows_of(name, 10.0)]


RESULT_FILES = {  # what a results file may hold, as bytes
    "foreign": b"name,score\nalice,3\n",
    "not text": b"run_id,technique\n\x00\x01\xff garbage",
    "older schema": _csv(OLDEST_COLUMNS, _ran("baseline", "fused")),
    "only status rows": _csv(results.COLUMNS, rows_of("tf32", 0, status="skipped", reason="CUDA only")),
    "an error-only configuration beside one that ran": _csv(
        results.COLUMNS,
        _ran("baseline", "fused")
        + rows_of(
            "baseline",
            0,
            status="error",
            reason="ValueError: boom",
            data="short.txt",
            timestamp_utc="2026-11-24T00:00:00+00:00",
        ),
    ),
    "a number that is not one": _csv(results.COLUMNS, [{**row, "step_ms": "fast"} for row in _ran("baseline")]),
    "an unknown status": _csv(results.COLUMNS, [{**row, "status": "great"} for row in _ran("baseline")]),
    "nan losses": _csv(results.COLUMNS, [{**row, "loss": "nan"} for row in _ran("baseline", "fused")]),
    "empty": b"",
    "windows line endings": _csv(results.COLUMNS, _ran("baseline")).replace(b"\n", b"\r\n"),
}
RESULT_COMMANDS = ("report", "plots", "compare", "init_results", "reset", "technique")
OK, REFUSED = 0, checks.EXIT_BAD_INPUT
EXPECTED = {  # file -> {command: (exit status, what the line says)}; every command reads every file
    "foreign": dict.fromkeys(RESULT_COMMANDS, (REFUSED, "not this suite's"))
    | {"reset": (REFUSED, "not a results file of this suite")},
    "not text": dict.fromkeys(RESULT_COMMANDS, (REFUSED, "is not a text CSV; it was left unchanged"))
    | {"reset": (OK, "")},  # our header, damaged after it: moved aside whole, as make reset promises
    "older schema": {
        "report": (OK, ""),
        "plots": (OK, ""),
        "compare": (OK, ""),
        "reset": (OK, ""),
        "init_results": (REFUSED, "older version"),
        "technique": (REFUSED, "older version"),
    },
    "only status rows": {
        "report": (OK, ""),
        "plots": (REFUSED, "no successful measured steps"),
        "compare": (REFUSED, "no successful measured steps"),
        "reset": (OK, ""),
        "init_results": (OK, ""),
        "technique": (OK, ""),
    },
    "an error-only configuration beside one that ran": dict.fromkeys(RESULT_COMMANDS, (OK, "")),
    "a number that is not one": dict.fromkeys(
        ("report", "plots", "compare"), (REFUSED, "line 2: step_ms 'fast' is not a number")
    )
    | {"reset": (OK, ""), "init_results": (OK, ""), "technique": (OK, "")},
    "an unknown status": dict.fromkeys(
        ("report", "plots", "compare"), (REFUSED, "status 'great' is not one of ok, skipped, oom, error")
    )
    | {"reset": (OK, ""), "init_results": (OK, ""), "technique": (OK, "")},
    "nan losses": dict.fromkeys(RESULT_COMMANDS, (OK, "")),
    "empty": dict.fromkeys(("report", "plots", "compare"), (REFUSED, "is empty"))
    | {"reset": (OK, ""), "init_results": (OK, ""), "technique": (OK, "")},
    "windows line endings": dict.fromkeys(RESULT_COMMANDS, (REFUSED, "has Windows line endings (CRLF)"))
    | {"reset": (OK, "")},  # ours: moved aside whole
}


@pytest.mark.parametrize("command", RESULT_COMMANDS)
@pytest.mark.parametrize("kind", RESULT_FILES)
def test_every_command_that_reads_results_handles_every_kind_of_file(tmp_path, monkeypatch, capsys, kind, command):
    results_file = tmp_path / "results.csv"
    results_file.write_bytes(RESULT_FILES[kind])
    status, said = EXPECTED[kind][command]
    settings = {"RESULTS_FILE": results_file, "REPORT": tmp_path / "R.md", "PLOTS_DIR": tmp_path / "plots",
                "DATA": "coinflip", "A": "baseline", "B": "fused"}
    code = _run_command(command, settings, monkeypatch)
    if status == REFUSED:
        _said_one_line(capsys, code, said)
    else:
        assert code == OK, capsys.readouterr().err
    if command == "reset" and code == OK:  # moved aside whole, never changed
        (backup,) = tmp_path.glob("results.csv.*.bak")
        assert backup.read_bytes() == RESULT_FILES[kind] and not results_file.exists()
    elif command == "init_results" and kind == "empty":
        assert results_file.read_text() == results.HEADER  # an empty file gets its header, as a new one does
    else:
        assert results_file.read_bytes() == RESULT_FILES[kind]


def test_profile_never_touches_the_results_file(tmp_path, monkeypatch, capsys):
    results_file = tmp_path / "results.csv"
    results_file.write_bytes(RESULT_FILES["foreign"])
    for name, value in {
        "RESULTS_FILE": str(results_file),
        "STEPS": "1",
        "WARMUP": "0",
        "MODEL": "tiny",
        "BATCH": "2",
        "SEQ": "16",
        "DEVICE": "cpu",
    }.items():
        set_env(monkeypatch, name, value)
    _set(monkeypatch, TECHNIQUE="baseline", PLOTS_DIR=tmp_path / "plots")
    assert profile.main() == 0
    assert (
        results_file.read_bytes() == RESULT_FILES["foreign"] and (tmp_path / "plots" / "profile_baseline.csv").exists()
    )


def test_a_run_that_cannot_fit_is_refused_before_it_trains(existing, monkeypatch, capsys):
    results_file, before = existing
    for name, value in tiny_env(results_file, SEQ="100000", BATCH="4").items():
        set_env(monkeypatch, name, value)
    # refused from the model's shapes (built on the meta device), before its weights take memory
    monkeypatch.setattr(train, "build_run", lambda *args: pytest.fail("the model was built"))
    with pytest.raises(SystemExit) as exit_:
        train.main(registry.load_setup("baseline"), name="baseline", argv=[])
    assert exit_.value.code == checks.EXIT_BAD_INPUT
    line = one_line(capsys.readouterr().err)
    assert "this run cannot fit: it needs at least 298.3 GiB" in line
    assert "one layer's T x T attention scores 298.0" in line
    assert "or use flash" in line and results_file.read_bytes() == before


def test_the_lower_bound_is_what_any_step_must_hold():
    model = build_model("tiny", 64)  # 2 layers, 4 heads, width 128, vocabulary 256
    least = model.least_bytes(batch=3, seq=64)
    assert least == {"weights and gradients": 8 * model.num_params(), "logits": 2 * 3 * 64 * 256,
                     "one layer's T x T attention scores": 2 * 3 * 4 * 64 * 64}
    model.set_attention("sdpa")  # flash: no T x T scores to count
    assert "one layer's T x T attention scores" not in model.least_bytes(3, 64)


def test_every_command_says_bad_input_and_ctrl_c_in_one_line(capsys):
    @checks.command("thing", KeyError)
    def main(raised):
        raise raised

    for raised, code, said in [(checks.BadInput("BATCH must be positive"), 2, "thing: error: BATCH must be positive"),
                               (KeyError("no such row"), 2, "thing: error: 'no such row'"),
                               (KeyboardInterrupt(), 130, "thing: interrupted")]:
        assert main(raised) == code
        assert capsys.readouterr().err.strip().splitlines() == [said]


@pytest.mark.parametrize("variable", ["REPORT", "MATRIX_REPORT", "GRID_REPORT", "TUNE_REPORT"])
def test_no_report_is_written_over_the_results_file(existing, tmp_path, monkeypatch, capsys, variable):
    from utils.drivers import grid, matrix
    from utils.tune import __main__ as tune

    results_file, before = existing
    _set(monkeypatch, RESULTS_FILE=results_file, PLOTS_DIR=tmp_path, PLAN="1", GPU="t4", MODEL="tiny",
         **{variable: results_file})
    command = {"REPORT": report_command.main, "MATRIX_REPORT": matrix.main, "TUNE_REPORT": tune.main,
               "GRID_REPORT": lambda: grid.main(["report"])}[variable]
    _said_one_line(capsys, command(), f"{variable}={results_file} is RESULTS_FILE: writing it would replace")
    assert results_file.read_bytes() == before
