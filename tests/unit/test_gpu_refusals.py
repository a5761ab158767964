"""What a GPU box can get wrong before a step runs, checked on a CPU: TF32 held as set (and
overrides in the environment refused), bitsandbytes without its CUDA binary, a flash-attn that
installs but does not import, combinations CUDA graphs cannot capture, compile's graphed
modes with accumulation, and an interpreter that lacks what the suite needs."""

import logging
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from helpers import ROOT, run_config, set_env

from utils import catalog, checks, registry, requirements, settings
from utils.drivers import all as run_all
from utils.measure import config
from utils.plan import planner
from utils.techniques import Skip, optimizers, stages
from utils.techniques.parallel import World


def _cuda_run(**cfg):
    """The state a technique function reads, for a run on CUDA (nothing is built)."""
    return SimpleNamespace(cfg=SimpleNamespace(device="cuda", world=World(), technique="t", **cfg), applied=[],
                           autocast_dtype=torch.bfloat16, model=None)


@pytest.fixture
def restore_tf32():
    before = stages.tf32_state()
    yield
    stages.set_tf32(before["cuda.matmul"])


def test_tf32_is_read_back_as_set(restore_tf32):
    stages.set_tf32(True)
    assert all(stages.tf32_state().values())
    stages.set_tf32(False)
    assert not any(stages.tf32_state().values())
    assert set(stages.tf32_state()) >= {"cuda.matmul"}


def test_an_environment_that_overrules_tf32_is_refused(monkeypatch, restore_tf32):
    set_env(monkeypatch, stages.TF32_FORCED_ON, "1")
    with pytest.raises(checks.BadInput, match="TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 .* unset it"):
        stages.strict_fp32(_cuda_run())
    monkeypatch.delenv(stages.TF32_FORCED_ON)
    stages.strict_fp32(_cuda_run())  # nothing overrules it: fp32
    set_env(monkeypatch, stages.TF32_FORCED_OFF, "0")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    with pytest.raises(checks.BadInput, match="NVIDIA_TF32_OVERRIDE=0 .* tf32 would run fp32"):
        stages.tf32(_cuda_run())


def test_bitsandbytes_without_its_cuda_binary_is_skipped_before_training(monkeypatch):
    from bitsandbytes import cextension

    stand_in = cextension.ErrorHandlerMockBNBNativeLibrary.__new__(cextension.ErrorHandlerMockBNBNativeLibrary)
    stand_in.error_msg = "\nCUDA binary not found: libbitsandbytes_cuda130.so\n"
    monkeypatch.setattr(cextension, "lib", stand_in)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(Skip, match="cannot load its CUDA binary .*libbitsandbytes_cuda130.so"):
        optimizers._bitsandbytes(_cuda_run())
    # only the CPU backend's optional-kernel notice is quietened, not the CUDA loader's warnings
    assert logging.getLogger("bitsandbytes.cextension").getEffectiveLevel() <= logging.WARNING


def test_a_flash_attn_that_installs_but_does_not_import_is_named_and_sdpa_runs(tmp_path, monkeypatch):
    package = tmp_path / "flash_attn"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    usable, why = stages.flash_attn_package()
    assert not usable and "installed but does not import (ImportError: flash_attn_2_cuda.so: undefined" in why


@pytest.mark.parametrize("parts", ["fp16+cudagraphs", "8bit+cudagraphs", "lion+cudagraphs", "lion8bit+cudagraphs",
                                   "offload+cudagraphs", "stack_memory+cudagraphs"])
def test_what_cuda_graphs_cannot_capture_is_refused_by_name(parts):
    with pytest.raises(checks.BadInput, match="cuda_graphs"):
        registry.combination(parts)


def test_a_step_that_cannot_be_captured_says_why():
    run = SimpleNamespace(scaler=torch.amp.GradScaler("cpu", enabled=True), optimizer=None)
    assert "GradScaler" in stages.step.uncapturable(run)
    run = SimpleNamespace(scaler=torch.amp.GradScaler("cpu", enabled=False),
                          optimizer=type("AdamW8bit", (), {"__module__": "bitsandbytes"})())
    assert "bitsandbytes.AdamW8bit steps from the host" in stages.step.uncapturable(run)


def test_what_cannot_clip_or_accumulate_in_its_step_is_refused_up_front():
    for technique in ("step_in_backward", "offload", "flash+step_in_backward"):
        with pytest.raises(config.ConfigError, match=r"cannot clip gradients \(GRAD_CLIP=1\)"):
            config.check_technique(technique, "default", 4, grad_clip=1.0)
        config.check_technique(technique, "default", 4)  # without clipping: runs
    config.check_technique("fp16+accum", "default", 4, grad_clip=1.0)  # unscaled, then clipped: runs
    with pytest.raises(config.ConfigError, match="REFERENCE_RANKS=2: the optimizer steps in backward, once per"):
        config.check_technique("step_in_backward", "default", 4, reference_ranks=2)


def test_compile_graphed_modes_with_accumulation_are_refused_up_front(monkeypatch, capsys, results_file):
    with pytest.raises(config.ConfigError, match="pytorch/pytorch#169545"):
        config.check_technique("compile+accum", "reduce-overhead", 4)
    with pytest.raises(config.ConfigError, match="accumulates 2 micro-batches"):
        config.check_technique("compile", "max-autotune", 4, reference_ranks=2)
    config.check_technique("compile+accum", "default", 4)
    config.check_technique("compile+accum", "reduce-overhead", 1)
    config.check_technique("accum", "reduce-overhead", 4)  # nothing compiled
    for name, value in {"COMPILE_MODE": "reduce-overhead", "RESULTS_FILE": str(results_file), "DEVICE": "cpu"}.items():
        set_env(monkeypatch, name, value)
    assert run_all.main(["baseline", "compile+accum"]) == 2  # before the baseline runs
    assert "pytorch/pytorch#169545" in capsys.readouterr().err and not results_file.exists()


def test_an_interpreter_is_told_in_one_line_what_it_lacks():
    missing = {"pandas", "pytest"}

    def find(name):
        return None if name in missing else object()

    def version(name):
        return "2.11.0+cu130"

    assert requirements.problems([], find, version) == ["missing pandas (pip install pandas)"]
    assert requirements.problems(["test"], find, version) == ["missing pandas, pytest (pip install pandas pytest)"]
    old = requirements.problems(["lint"], lambda name: object(), lambda name: "2.5.1")
    assert old == ["torch 2.5.1 is older than 2.9, the oldest whose APIs the suite calls"]
    with pytest.MonkeyPatch.context() as m:  # a script run by hand, without make, is refused the same
        m.setattr(torch, "__version__", "2.5.1+cu121")
        with pytest.raises(config.ConfigError, match="torch 2.5.1\\+cu121 is older than 2.9"):
            config.load("baseline", settings.read())
    # the tables name packages requirements.txt pins: one list, checked against it
    assert set(requirements.OPTIONAL) | set(requirements.FOR_GOALS) <= set(requirements.pinned())


def test_every_target_checks_the_given_interpreter_first():
    proc = subprocess.run(["make", "-n", "--no-print-directory", "flash", f"PYTHON={sys.executable}"], cwd=ROOT,
                          capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{sys.executable} -m utils.requirements" and "utils.drivers.one flash" in lines[1]
    proc = subprocess.run([sys.executable, "-m", "utils.requirements", "lint"], cwd=ROOT, capture_output=True)
    assert proc.returncode == 0 and not proc.stderr


def test_offload_is_not_planned_even_on_a_gpu_box(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # on a GPU box offload would build for real
    cfg = run_config("offload", steps=1, warmup=0, model="tiny", batch=2, seq=16, device="cpu", data="coinflip",
                     seed=0, lr=None, layers=2)
    with pytest.raises(planner.NotModelled, match="CPUOffloadOptimizer keeps AdamW's state in host memory"):
        planner.check_modelled(registry.load_setup("offload"), cfg)


@pytest.mark.parametrize("package", ["bitsandbytes", "torchao", "peft"])
def test_the_optional_packages_name_the_techniques_that_need_them(package):
    needing = [t.name for t in catalog.TECHNIQUES if any(package in p for p in t.packages)]
    assert requirements.OPTIONAL[package].split(", ") == sorted(needing)
