"""results.csv: header once, atomic appends, foreign or corrupted files refused untouched."""

import multiprocessing

import pytest
from helpers import set_env, tiny_run

from utils import results, settings
from utils.measure import config

ROW = {column: "" for column in results.COLUMNS}


def _rows(n, technique="baseline"):
    return [
        {**ROW, "run_id": technique, "technique": technique, "status": "ok", "step": i, "step_ms": 1.5}
        for i in range(n)
    ]


def test_header_is_written_once(results_file):
    results.append_rows(results_file, _rows(2))
    results.append_rows(results_file, _rows(3))
    lines = results_file.read_text().splitlines()
    assert lines[0] + "\n" == results.HEADER
    assert len(lines) == 1 + 5 and lines.count(lines[0]) == 1
    assert len(results.read(results_file)) == 5


def test_init_creates_a_header_and_keeps_existing_rows(results_file):
    results.init(results_file)
    assert results_file.read_text() == results.HEADER
    results.append_rows(results_file, _rows(2))
    before = results_file.read_bytes()
    results.init(results_file)
    assert results_file.read_bytes() == before


BAD_FILES = {
    "foreign header": b"name,score\nalice,3\n",
    "a row with too few fields": results.HEADER.encode() + b"abc,1,2\n",
    "a last line cut short": results.HEADER.encode() + results.format_rows(_rows(1)).encode()[:-20],
    "binary": b"\x00\xff\xfe" * 10,
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_files_are_refused_and_left_unchanged(results_file, kind):
    results_file.write_bytes(BAD_FILES[kind])
    for attempt in (
        lambda: results.append_rows(results_file, _rows(1)),
        lambda: results.read(results_file),
        lambda: results.check_appendable(results_file),
    ):
        with pytest.raises(results.ResultsFileError) as err:
            attempt()
        assert "\n" not in str(err.value) and str(results_file) in str(err.value)
    assert results_file.read_bytes() == BAD_FILES[kind]


def test_config_refuses_a_bad_results_file_before_any_work(results_file, monkeypatch):
    results_file.write_bytes(BAD_FILES["foreign header"])
    set_env(monkeypatch, "RESULTS_FILE", str(results_file))
    with pytest.raises(config.ConfigError, match="header"):
        config.load("baseline", settings.read())


def _append_many(path, technique, times):
    for _ in range(times):
        results.append_rows(path, _rows(3, technique))


def test_two_processes_appending_at_once_lose_no_row(results_file):
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_append_many, args=(results_file, name, 60)) for name in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    df = results.read(results_file)  # raises on any interleaved or torn line
    assert df["technique"].value_counts().to_dict() == {"a": 180, "b": 180}
    assert results_file.read_text().count("run_id,") == 1


def test_a_file_of_an_older_version_is_read_but_not_appended_to(results_file):
    old_columns = [c for c in results.COLUMNS if c not in ("repeat", "mfu", "tflops")]
    results_file.write_text(
        ",".join(old_columns) + "\n" + ",".join("x" if c == "technique" else "" for c in old_columns) + "\n"
    )
    before = results_file.read_bytes()
    df = results.read(results_file)
    assert list(df.columns) == list(results.COLUMNS) and df["technique"].tolist() == ["x"] and df["mfu"].isna().all()
    with pytest.raises(results.ResultsFileError, match="older version.*make reset"):
        results.append_rows(results_file, _rows(1))
    assert results_file.read_bytes() == before


def test_a_run_records_every_what_ran_column():
    assert set(results.WHAT_RAN) - {"attention"} <= set(tiny_run().record())  # attention: probed as it runs
    assert set(results.WHAT_RAN) <= set(results.COLUMNS)


def test_a_blank_read_back_is_written_blank_not_as_nan(results_file):
    results.append_rows(results_file, [{"run_id": "a", "technique": "baseline", "status": "ok", "compile_mode": None}])
    row = results.read(results_file).iloc[0].to_dict()  # its blanks are NaN, text columns included
    results.append_rows(results_file, [{**row, "run_id": "b"}])
    again = results.read(results_file)
    assert again["compile_mode"].isna().all() and "nan" not in results_file.read_text()
