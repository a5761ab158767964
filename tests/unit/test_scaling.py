"""make scaling: models sorted by their parameters, measured while runs finish in time, planned
from the first that does not; the figure drawn from both kinds of rows."""

from helpers import rows_of, set_env

from utils import models, results
from utils.drivers import scaling
from utils.plots import memory


def test_models_are_taken_smallest_first_and_planned_from_the_first_run_that_times_out(
        monkeypatch, results_file, tmp_path, capsys):
    values = {"RESULTS_FILE": results_file, "PLOTS_DIR": tmp_path, "SCALING_MODELS": "small tiny lstm",
              "SCALING_TECHNIQUES": "baseline", "GPU": "a100-40gb", "SEQ": "64"}
    for name, value in values.items():
        set_env(monkeypatch, name, str(value))
    measured = []

    def measure(technique, model, size, timeout):  # the first model runs in time (no rows here), the next does not
        measured.append((model, size))
        return len(measured) == 1, None

    monkeypatch.setattr(scaling, "measure", measure)
    assert scaling.main() == 0
    sizes = {m: models.count_params(m, 64) for m in ("lstm", "tiny", "small")}
    order = sorted(sizes, key=sizes.get)
    assert [m for m, _ in measured] == order[:2] and measured[0][1] == {"batch": 1, "seq": 64}
    rows = results.read(results_file)
    assert list(rows["model"]) == order[1:] and set(rows["kind"]) == {"predicted"}  # planned from the second on
    assert list(rows["n_params"]) == [sizes[m] for m in order[1:]]  # counted as the model counts itself
    assert "scaling: planned baseline on" in capsys.readouterr().out
    assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_the_figure_draws_the_runs_make_scaling_wrote_only(results_file, tmp_path, monkeypatch):
    # the same technique and shape on another device, in the same file: never a point of this figure
    mine = rows_of("baseline", 10.0, run_id="mine", n_params=1000, batch=1, seq=64, peak_alloc_mib=100.0)
    other = rows_of("baseline", 50.0, run_id="other", n_params=2000, batch=1, seq=64, peak_alloc_mib=300.0,
                    device="Other GPU")
    results.append_rows(results_file, mine + other)
    figures = []
    monkeypatch.setattr(memory.plt, "close", figures.append)  # keep the figure to look at
    assert memory.plot_scaling(results.read(results_file), ["baseline"], 1, 64, tmp_path / "s.png", ["mine"])
    tokens = figures[0].axes[1]
    assert [list(line.get_xdata()) for line in tokens.lines] == [[1000]]
