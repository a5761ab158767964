"""make scaling: models sorted by their parameters, measured while runs finish in time, planned
from the first that does not; the figure drawn from both kinds of rows."""

from helpers import set_env

from utils import models, results
from utils.drivers import scaling


def test_models_are_taken_smallest_first_and_planned_from_the_first_run_that_times_out(
        monkeypatch, results_file, tmp_path, capsys):
    values = {"RESULTS_FILE": results_file, "PLOTS_DIR": tmp_path, "SCALING_MODELS": "small tiny lstm",
              "SCALING_TECHNIQUES": "baseline", "GPU": "a100-40gb", "SEQ": "64"}
    for name, value in values.items():
        set_env(monkeypatch, name, str(value))
    measured = []

    def measure(technique, model, size, timeout):  # the first model runs in time, the next does not
        measured.append((model, size))
        return len(measured) == 1

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
