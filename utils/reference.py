"""The reference, made from the tables that hold it: `make help` (the targets, the techniques
from the scripts' docstrings, the settings) and docs/reference.md (the same, plus the model
presets and the results.csv columns). tests/unit/test_reference.py fails when docs/reference.md
is not what this prints, or when a Makefile target is missing from TARGETS.

usage: python3 -m utils.reference help|docs   (stdlib only: make help needs no venv)
"""

import sys

from utils import catalog, models, registry, requirements, settings
from utils.results.schema import COLUMNS

# target -> what it does (the technique targets come from the scripts folder)
TARGETS = {
    "<technique>": "train with one technique (scripts/<technique>.py), append its rows to RESULTS_FILE; "
    "REPEATS>1 or CI_HALF_WIDTH: through all",
    "<a+b+c>": "a combination: the baseline plus each part's own lines, in stage order (make flash+checkpointing+lion)",
    "run": "the technique or combination in T (else TECHNIQUE): make run T=bf16+checkpointing+lion",
    "all": "every technique of TECHNIQUES, each in a fresh process, REPEATS times interleaved; goes on past one "
    "that fails; a summary line per run, exit non-zero only if one failed",
    "ddp": "TECHNIQUE under torchrun on NPROC processes with DDP, then the loss check against one process",
    "fsdp": "the same with FSDP2 (fully_shard per block, then the root)",
    "scaling_gpus": "TECHNIQUE under KIND at 1, 2, ... NPROC processes: tokens/s, efficiency, plot",
    "report": "REPORT: per configuration a table per technique (best bold), recommendations, learning and memory",
    "plots": "step-time lines, box plot, bootstrap means, heatmap and speedup bars into PLOTS_DIR",
    "compare": "histogram of A - B's step time (or PART's), paired by run and step, with the mean difference's CI",
    "profile": "torch.profiler over STEPS steps of TECHNIQUE: top operators as text, CSV and a bar plot",
    "grid": "the LSTM-vs-GPT grid: GRID_MODELS x GRID_LAYERS x GRID_OPTIMIZERS, fresh processes, then GRID_REPORT",
    "grid_report": "GRID_REPORT again from the grid's runs already in RESULTS_FILE (the newest of each cell)",
    "lrsweep": "TECHNIQUE once per LR of LRS; names the LR with the best validation loss",
    "session": "on this device in one call: its GPU tests, make all, nanoGPT's bench (NANOGPT_DIR), report and "
    "plots into SESSION_DIR",
    "matrix": "FACTORS on/off x OPTIMIZERS on BASE, a fresh process per cell (PLAN=1: planned), then MATRIX_REPORT "
    "with main effects and interactions",
    "plan": "predicted peak allocated, reserved and device total on GPU, and the breakdown, per technique of "
            "TECHNIQUES (fake tensors, any machine)",
    "plan_check": "the planner against every measured figure it can model, each labelled (allocated, device total, "
                  "tracked): predicted, measured, error, the bars; its tables planned at once, a worker process per "
                  "core",
    "codegen_check": "each compiled graph of the plans of TECHNIQUES on GPU: its buffers' peak as planned against "
                     "the wrapper inductor generates for it (needs Triton; no GPU)",
    "tune": "the fastest setup that fits: the techniques' space planned for GPU (or each of GPUS; FSDP2 on the "
    "fewest GPUs where one is too small), ranked, pruned, the Pareto front, TUNE_REPORT and the command to paste; "
    "VERIFY=k: tuned for this machine, the top k measured, the winner's learning checked",
    "maxbatch": "largest batch that trains per technique (TECHNIQUE, else TECHNIQUES); PLAN=1: planned",
    "scaling": "SCALING_TECHNIQUES x SCALING_MODELS: tokens/s and peak memory against parameters (plot)",
    "gpu_check": "a first GPU run's check of the GPU path (under 10 min): TF32 flags and matmul error, make all at "
    "a small shape, step vs wall clocks, CUDA graphs' memory, ddp/fsdp (2+ GPUs), make plan for this GPU; each "
    "figure against its bar, into docs/results/<device>/; exit 1 if one fails, 2 without a GPU",
    "finetune_check": "the fine-tuning techniques on this GPU (Llama 3.2 1B, B=2, T=1024; bf16 weights, LoRA, QLoRA, "
    "chunked cross-entropy, activation offloading, the step in backward, 8-bit AdamW, torchtune's QLoRA recipe): "
    "each ran as itself, its loss fell, make plan beside it; into docs/results/<device>/finetune_check/",
    "init_results": "create RESULTS_FILE with its header (an existing one is only checked)",
    "reset": "move RESULTS_FILE to RESULTS_FILE.<utc time>.bak, then remove the plots in PLOTS_DIR",
    "clean": "remove the plots in PLOTS_DIR and the caches (keeps results and .venv)",
    "test": "tests/unit/: unit and in-process integration tests (CPU, two processes, under 3 minutes on 2 cores)",
    "test-e2e": "tests/e2e/: make all over every technique, torchrun, session, grid, maxbatch trials, killed runs, "
    "injected delays, the GPU tests (two processes, a module to each whole)",
    "lint": "ruff over the code (ruff.toml: lines <= 120)",
    "help": "this text (also what plain make prints)",
    "python_check": "with PYTHON=...: what that interpreter lacks for the goals asked, in one line (run before each "
    "target that runs Python: not init_results, reset, clean or help)",
}


def help_text():
    lines = ["usage: make [target] [VARIABLE=value ...]   (the command reads each as SUITE_VARIABLE)", "", "targets:"]
    for name, text in TARGETS.items():
        lines.append(f"  {name:<14} {text}")
        if name == "<technique>":
            lines += [f"{'':17}{t:<14} {registry.summary(t)}" for t in registry.known()]
    for group, title in settings.GROUPS.items():
        lines += ["", f"variables, {title} (default):"]
        for s in settings.SETTINGS:
            if s.group == group:
                lines.append(f"  {s.name + '=' + s.default:<28} {s.help}")
    return "\n".join(lines)


def _cell(text):
    return text.replace("|", "\\|")


def docs_text():
    out = [
        "# Reference",
        "",
        "Generated by `python3 -m utils.reference docs` from the tables that hold each list (the targets in "
        "`utils/reference.py`, the settings in `utils/settings.py`, the techniques in `utils/catalog.py` and "
        "`scripts/`, the presets in `utils/models/` and its shipped configs, the columns in "
        "`utils/results/schema.py`); a test fails when this file is stale.",
        "",
        "## Targets",
        "",
        "| target | what it does |",
        "|---|---|",
        *(f"| `{name}` | {_cell(text)} |" for name, text in TARGETS.items()),
        "",
        "## Techniques",
        "",
        "| technique | what it is (first line of its script) | runs on | changes besides speed and memory | "
        "make tune |",
        "|---|---|---|---|---|",
        *(f"| `{t}` | {_cell(registry.summary(t))} | {catalog.runs_on(catalog.BY_NAME[t])} | "
          f"{_cell(catalog.BY_NAME[t].learns)} | {catalog.BY_NAME[t].tune} |" for t in registry.known()),
        "",
        "make tune's roles: " + "; ".join(f"**{role}**: {text}" for role, text in catalog.TUNE_ROLES.items()) + ".",
        "",
        "## Variables",
        "",
        "Give them on make's command line (`make all STEPS=100`): make passes each to the command as `SUITE_STEPS`, "
        "and that namespaced variable is all the suite reads, so set `SUITE_STEPS=100` in the environment to give "
        "one there (a shell's own `STEPS`, `T` or `DEVICE` never reaches a run; a `SUITE_` name that is no "
        "setting is refused). A technique script run by hand takes each run setting as a flag too "
        "(`--steps 100`). Blank means the default.",
    ]
    for group, title in settings.GROUPS.items():
        out += ["", f"### {title[0].upper()}{title[1:]}", "", "| variable | default | meaning |", "|---|---|---|"]
        out += [f"| `{s.name}` | {s.default or '(blank)'} | {_cell(s.help)}"
                f"{' (environment only: no flag)' if group == 'run' and not s.flag else ''} |"
                for s in settings.SETTINGS if s.group == group]
    out += ["", "## Model presets (`MODEL=`)", "", "Besides these: `MODEL=hf:<config>` and "
            "`MODEL=path/to/file.py:function` (docs/models.md).", "",
            "| preset | architecture | layers | width | heads | vocabulary | batch | seq |",
            "|---|---|---|---|---|---|---|---|"]
    for name, (shape, batch, seq) in models.PRESETS.items():
        heads = shape["n_head"] if models.arch(name) == "gpt" else "–"
        out.append(f"| `{name}` | {models.arch(name)} | {shape['n_layer']} | {shape['n_embd']} | {heads} | "
                   f"{shape['vocab_size']} | {batch} | {seq} |")
    out += hf_table()
    out += ["", "## Optional packages", "", "requirements.txt installs them all; an environment without one (`PYTHON=` "
            "an existing one) skips what needs it, with the reason, and refuses only the make goals that need it.", "",
            "| package | what needs it |", "|---|---|",
            *(f"| {name} | {_cell(used)} |" for name, used in requirements.OPTIONAL.items()),
            *(f"| {name} | make {', '.join(goals)} |" for name, goals in requirements.FOR_GOALS.items())]
    out += ["", "## results.csv columns", "", "| column | meaning |", "|---|---|"]
    out += [f"| `{name}` | {_cell(text)} |" for name, text in COLUMNS.items()]
    return "\n".join(out) + "\n"


def hf_table():
    """The Hugging Face configs the suite ships (MODEL=hf:<name>), read from their JSON."""
    out = ["", "## Hugging Face configs shipped (`MODEL=hf:<name>`)", "",
           "Built from the config with fresh random weights (never downloaded); see docs/models.md.", "",
           "| name | model_type | layers | width | heads (KV) | vocabulary | context | batch | seq | source |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name, (source, hub, *_) in models.SHIPPED.items():
        spec = models.resolve(f"{models.HF}{name}")
        c = spec.config
        width = c.get("n_embd", c.get("hidden_size"))
        heads = c.get("n_head", c.get("num_attention_heads"))
        kv = c.get("num_key_value_heads", heads)
        where = f"[{hub}]({source})" if hub else _cell(source)
        out.append(f"| `hf:{name}` | {c['model_type']} | {spec.layers} | {width} | {heads}"
                   f"{f' ({kv})' if kv != heads else ''} | {spec.vocab_size} | {spec.context} | {spec.batch} | "
                   f"{spec.seq} | {where} |")
    return out


def main(argv=None):
    command = (argv or sys.argv[1:] or ["help"])[0]
    print(help_text() if command == "help" else docs_text(), end="\n" if command == "help" else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
