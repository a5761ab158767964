"""make tune: its space from the techniques' table, the search's splitting and confirming (on a
pool whose plans follow known lines), the Pareto front, the command it prints, bad input."""

import dataclasses
from types import SimpleNamespace

import pandas as pd
import pytest
from helpers import set_env

from utils import catalog, checks, registry, settings
from utils.devices import by_key
from utils.tune import __main__ as tune
from utils.tune import plans, report, search, space
from utils.tune.space import Config


def test_every_technique_has_a_role_and_the_default_space_keeps_the_learning():
    assert {t.tune for t in catalog.TECHNIQUES} <= catalog.TUNE_ROLES.keys()
    configs, savers, _ = space.space((), by_key("h100-sxm"))
    named = {p for c in configs for p in registry.combination(c.technique).parts} - {catalog.BASELINE}
    parts = {atom for p in named for atom in catalog.BY_NAME[p].equals or (p,)}  # stack: its parts
    # only what the table says learns the same (up to rounding) is searched unasked
    assert all(catalog.BY_NAME[p].tune == catalog.SEARCHED for p in parts)
    assert not parts & {"lion", "8bit", "lora", "qlora", "pure_bf16", "sgd", "geglu"}
    assert {("stack", "default", "model"), ("stack", "default", "blocks"), ("stack", "reduce-overhead", "blocks"),
            ("baseline", "", "")} <= {(c.technique, c.compile_mode, c.compile_scope) for c in configs}
    assert set(savers) == {t.name for t in catalog.TECHNIQUES if t.tune == catalog.SAVES_MEMORY}


def test_the_space_is_pruned_by_capability_conflict_and_unmodelled_modes():
    h100, _, pruned = space.space((), by_key("h100-sxm"))
    t4, _, t4_pruned = space.space((), by_key("t4"))
    names = {c.technique for c in h100}
    assert "compile+cudagraphs" not in names and "fp16+cudagraphs" not in names  # catalog.CONFLICTS
    assert pruned["conflict (the catalog refuses the pair)"] > 0
    compiled = [c for c in h100 if c.compile_mode == "default" and c.compile_scope == "model"]
    assert pruned["compile mode not modelled"] == 2 * len(compiled)
    assert not {c.technique for c in t4} & {"bf16", "flash", "stack", "tf32"}  # Turing: no bf16
    assert t4_pruned["capability (T4 is 7.5)"] > 0
    cpu, _, cpu_pruned = space.space((), None)
    assert not any("cudagraphs" in c.technique or c.compile_mode == "reduce-overhead" for c in cpu)
    assert cpu_pruned["CUDA only"] > 0


def test_opt_in_techniques_join_their_stage_and_bad_names_are_refused():
    configs, _, _ = space.space(("lion",), by_key("h100-sxm"))
    assert {"lion", "flash+lion"} <= {c.technique for c in configs}
    with pytest.raises(checks.BadInput, match="unknown technique"):
        space.options(("nope",))
    with pytest.raises(checks.BadInput, match="not a choice of its own"):
        space.options(("accum",))


def test_the_command_and_label_say_how_the_batch_is_reached():
    one = Config("stack", "reduce-overhead", batch=4, accum=4)
    assert one.full_name == "stack+accum"
    assert one.command() == "make run T=stack+accum BATCH=4 ACCUM=4 COMPILE_MODE=reduce-overhead"
    many = Config("flash+checkpointing", "", batch=2, accum=1, gpus=8, parallel="fsdp")
    assert many.command() == "make fsdp NPROC=8 TECHNIQUE=flash+checkpointing BATCH=2"
    assert "on 8 GPUs (fsdp)" in many.label
    assert many.torchrun() == ("SUITE_PARALLEL=fsdp SUITE_BATCH=2 torchrun --standalone --nproc_per_node=8 "
                               "-m utils.measure.train flash+checkpointing")
    # 32 GPUs are 4 machines of 8: torchrun's rendezvous on each, not make fsdp's one machine
    nodes = Config("flash+checkpointing", "", batch=2, gpus=32, parallel="fsdp", nodes=4)
    assert nodes.command() == nodes.torchrun() == (
        "SUITE_PARALLEL=fsdp SUITE_BATCH=2 torchrun --nnodes=4 --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT "
        "--nproc_per_node=8 -m utils.measure.train flash+checkpointing")
    blocks = Config("flash+compile", "default", batch=2, gpus=8, parallel="fsdp", compile_scope="blocks")
    assert blocks.command() == "make fsdp NPROC=8 TECHNIQUE=flash+compile BATCH=2 COMPILE_SCOPE=blocks"
    assert "SUITE_COMPILE_SCOPE=blocks torchrun" in blocks.torchrun() and "(by blocks)" in blocks.label
    assert Config("stack", "reduce-overhead", compile_scope="blocks").compiled_as == "reduce-overhead, by blocks"
    inside = Config("checkpointing+compile", "default", compile_scope="blocks_in_checkpoint")
    assert inside.command().endswith(" COMPILE_SCOPE=blocks_in_checkpoint")
    assert "(by blocks in checkpoint)" in inside.label


def test_blocks_in_checkpoint_is_searched_only_where_a_checkpoint_is():
    assert space.scopes_of("flash+compile") == ["model", "blocks"]
    assert space.scopes_of("flash+checkpointing+compile") == list(catalog.COMPILE_SCOPES)
    # checkpointing is a memory saver, tried only where a step does not fit (_compiled_of's splits)
    configs, _, _ = space.space((), by_key("h100-sxm"))
    assert not any(c.compile_scope == "blocks_in_checkpoint" for c in configs)


def _figures(mib, ms, screened=False):
    return plans.Figures(allocated_mib=mib, reserved_mib=mib, total_mib=mib + 500, context_mib=500,
                         ms={"forward": ms / 3, "backward": 2 * ms / 3 - 1, "optimizer": 1.0}, tokens=1000,
                         flops_per_token=10**6, dtype="bf16-autocast", screened=screened)


def test_figures_are_extrapolated_affinely_in_the_depth():
    at = plans.extrapolate(_figures(100, 10), _figures(150, 16), plans.SCREEN_DEPTHS, depth=12)
    assert plans.SCREEN_DEPTHS == (1, 2) and at.allocated_mib == 100 + 11 * 50 and at.screened
    assert at.step_ms == pytest.approx(10 + 11 * 6)
    # N GPUs: from the middle blocks, 3 and 4 (FSDP2's first and last differ)
    assert plans.screen_depths(8) == (3, 4) and plans.screen_depths(1) == plans.SCREEN_DEPTHS
    at = plans.extrapolate(_figures(300, 30), _figures(350, 36), plans.screen_depths(8), depth=12)
    assert at.allocated_mib == 350 + 8 * 50 and at.step_ms == pytest.approx(36 + 8 * 6)


class Pool:
    """pool.map over a plan function of known lines: memory 1,000 MiB + 1,000 per sequence
    (checkpointing: + 200), time 10 ms per sequence; the depth and GPU ignored. A plan runs in the
    budget where its device total is within it (the allocator releasing nothing)."""

    def __init__(self, budget_mib):
        self.calls, self.budget_mib = [], budget_mib

    def map(self, fn, givens, configs, gpus, depths):
        out = []
        for config, depth in zip(configs, depths, strict=True):
            self.calls.append((config, depth))
            per = 200 if "checkpointing" in config.technique else 1000
            ms = 10 * config.batch * config.accum + config.accum
            out.append(self.judged(_figures(1000 + per * config.batch, ms)))
        return out

    def judged(self, figures):
        return dataclasses.replace(figures, runs_in_budget=figures.total_mib <= self.budget_mib)


def _search(budget_mib, depth=None):
    return search.Search(Pool(budget_mib), {}, by_key("h100-sxm"), depth, budget_mib, space.Pruned())


def test_a_fitting_batch_is_never_split_nor_given_a_memory_saver():
    searching = _search(budget_mib=20_000)
    outcome = searching.screen([Config("baseline", batch=8)])[0]
    assert outcome.fits and len(searching.pool.calls) == 1


def test_what_does_not_fit_gets_savers_and_the_largest_fitting_micro_batch():
    searching = _search(budget_mib=5_600)  # 8 sequences need 9,500 MiB; with checkpointing 3,100
    outcome = searching.screen([Config("baseline", batch=8)])[0]
    assert not outcome.fits
    found = searching.split(outcome, ["checkpointing"])
    # the saver at the whole batch, and the largest divisor of 8 whose memory fits (4: 5,500 MiB with
    # 500 of context), accumulated: the ranking decides between them
    assert [(o.config.full_name, o.config.batch, o.config.accum) for o in found] == [
        ("checkpointing", 8, 1), ("accum", 4, 2)]


def test_where_nothing_fits_at_any_split_the_leanest_variant_is_split():
    searching = _search(budget_mib=2_000)  # B=1 alone: 2,500 MiB; with checkpointing B=2: 1,900, B=4: 2,300
    outcome = searching.screen([Config("baseline", batch=8)])[0]
    found = searching.split(outcome, ["checkpointing"])
    assert [(o.config.full_name, o.config.batch, o.config.accum) for o in found] == [("checkpointing+accum", 2, 4)]


def test_what_cannot_fit_by_its_weights_and_optimizer_state_alone_leaves_the_savers_to_what_can():
    class Weighed(Pool):
        """Four fast configurations: two over 9,000 MiB of weights (LoRA's fp32 base of a large model, say), two
        over 1,000 of weights and 8,000 of optimizer state (its full fine-tune's AdamW moments); one slower over
        1,000 and no state to speak of (its bf16 base under LoRA): each needs 1,000 MiB a sequence, 200 with
        checkpointing."""

        def map(self, fn, givens, configs, gpus, depths):
            out = []
            for config, depth in zip(configs, depths, strict=True):
                self.calls.append((config, depth))
                weights = 1_000 if config.technique.startswith(("pure_bf16", "fused", "tf32")) else 9_000
                state = 8_000 if config.technique.startswith(("fused", "tf32")) else 0
                per = 200 if "checkpointing" in config.technique else 1000
                ms = 10 * config.batch if weights + state == 1_000 else 5 * config.batch
                out.append(self.judged(dataclasses.replace(_figures(weights + state + per * config.batch, ms),
                                                           weights_mib=weights, optimizer_mib=state)))
            return out

    pruned = space.Pruned()
    searching = search.Search(Weighed(5_600), {}, by_key("h100-sxm"), None, 5_600, pruned)
    configs = [Config(name, batch=8) for name in ("fp16", "flash", "fused", "tf32", "pure_bf16")]
    fitting = tune._screened(searching, configs, ["checkpointing"], pruned)
    # the four fastest pass the GPU by their weights and state, so the one that can fit is given a saver and a
    # smaller batch
    assert [(o.config.full_name, o.config.batch, o.config.accum) for o in fitting] == [
        ("pure_bf16+checkpointing", 8, 1), ("pure_bf16+accum", 4, 2)]
    reason = next(r for r in pruned if r.startswith("does not fit: its weights and optimizer state alone"))
    assert pruned[reason] == 4
    assert pruned.example[reason].split(": ", 1)[1] in {"weights 9,000 MiB, optimizer state 0 MiB",
                                                        "weights 1,000 MiB, optimizer state 8,000 MiB"}


def test_confirm_plans_the_fastest_at_full_depth_and_drops_what_does_not_fit_there(monkeypatch):
    monkeypatch.setattr(search, "CONFIRM", 2)
    searching = _search(budget_mib=5_000, depth=12)
    ranked = [search.Outcome(Config("baseline", batch=b), _figures(100, b, screened=True), search.FITS)
              for b in (4, 1, 8, 2, 16)]
    kept = searching.confirm(ranked)
    full = [c.batch for c, depth in searching.pool.calls if depth is None]
    assert full == [4, 1, 8, 2]  # B=4 and B=8 do not fit at full depth (5,500 and 9,500 MiB): the next confirmed
    assert [(o.config.batch, o.figures.screened) for o in kept] == [(1, False), (2, False), (16, True)]
    assert searching.pruned["does not fit at full depth"] == 2


def test_a_full_plan_fits_where_its_step_runs_in_the_budget_and_keeps_its_cache_at_the_gpus_memory():
    whole = _figures(4_000, 10)  # device total 4,500 MiB: the allocator's cache, grown while the GPU had room
    assert whole.unfit(budget_mib=4_000) == ""  # replayed in 4,000 MiB it ran (runs_in_budget): it fits
    assert dataclasses.replace(whole, runs_in_budget=False).unfit(4_000) == "does not fit"
    assert dataclasses.replace(whole, steady_retries=2).unfit(4_000) == "releases the allocator's cache every step"
    # screened: a least bound, the replay's verdicts not its own
    screened = dataclasses.replace(whole, screened=True, runs_in_budget=False, steady_retries=3)
    assert screened.unfit(4_500) == "" and screened.unfit(4_400) == "does not fit"


def test_confirm_prunes_a_full_plan_that_releases_the_cache_every_step(monkeypatch):
    class Retrying(Pool):
        def map(self, fn, givens, configs, gpus, depths):
            return [dataclasses.replace(f, steady_retries=1 if c.batch == 4 and d is None else 0)
                    for f, c, d in zip(super().map(fn, givens, configs, gpus, depths), configs, depths, strict=True)]

    monkeypatch.setattr(search, "CONFIRM", 1)
    searching = search.Search(Retrying(10_000), {}, by_key("h100-sxm"), 12, 10_000, space.Pruned())
    ranked = [search.Outcome(Config("baseline", batch=b), _figures(100, b, screened=True), search.FITS) for b in (4, 2)]
    kept = searching.confirm(ranked)
    assert [(o.config.batch, o.figures.screened) for o in kept] == [(2, False)]
    assert searching.pruned.example["releases the allocator's cache every step at full depth"] == (
        "baseline B=4: device total 5,500 MiB, 1 releases a step")


def test_a_device_total_above_the_budget_by_the_allocators_cache_is_marked_and_said():
    cached = search.Outcome(Config("baseline", batch=4), _figures(4_800, 40), search.FITS)  # 5,300 MiB device total
    lean = search.Outcome(Config("baseline", batch=2), _figures(3_000, 20), search.FITS)
    found = report.Found(by_key("h100-sxm"), ("", 1), [cached, lean], space.Pruned(), 2, 2, 4, 5_000, None)
    rows = [line for line in report.table(found) if line.startswith("| ") and "---" not in line]
    assert "| 5.18 † |" in rows[1] and "| 3.42 |" in rows[2]
    assert report.CACHED_NOTE in report.table(found)
    assert "| H100 SXM 80GB | 1 | `baseline B=4` | 25,000 | 5.18 † |" in report.gpu_ranking([found])
    assert report.CACHED_NOTE in report.gpu_ranking([found])
    found.outcomes = [lean]
    assert report.CACHED_NOTE not in report.table(found) and report.CACHED_NOTE not in report.gpu_ranking([found])


def test_a_faster_row_the_search_did_not_confirm_is_said_beside_the_answer(monkeypatch):
    monkeypatch.setattr(search, "CONFIRM_ROUNDS", 1)
    searching = _search(budget_mib=5_000, depth=12)
    ranked = [search.Outcome(Config("baseline", batch=b), _figures(100, b, screened=True), search.FITS)
              for b in (4, 8, 1, 2)]
    kept = searching.confirm(ranked)  # one round: B=4 and B=8 do not fit at full depth, nothing is confirmed
    assert all(o.figures.screened for o in kept)
    confirmed = search.Outcome(Config("baseline", batch=16), _figures(100, 50), search.FITS)  # slower, planned
    found = report.Found(by_key("h100-sxm"), ("", 1), [confirmed, *kept], searching.pruned, 5, 4, 4, 5_000, 12)
    text = "\n".join(report.section(found, SimpleNamespace(model="tiny", seq=64), None))
    most = search.CONFIRM * search.CONFIRM_ROUNDS
    assert "**2 faster screened, not confirmed**" in text and f"plans at most {most} " in text
    assert "the fastest, `baseline B=1`" in text and "**Run:** `make run T=baseline BATCH=16`" in text


def test_a_configuration_its_settings_refuse_is_pruned_as_refused_not_failed():
    given = dataclasses.replace(settings.read(env={}), techniques=())
    config = Config("compile", batch=1, accum=2, compile_mode="reduce-overhead")
    said = plans.plan(given, config, "h100-sxm", None)
    assert said.startswith("refused by its settings: ") and "accumulat" in said


def test_the_pareto_front_keeps_only_the_undominated():
    points = [search.Outcome(Config(str(i)), dataclasses.replace(_figures(mib, 1), tokens=tokens), search.FITS)
              for i, (mib, tokens) in enumerate([(1000, 10), (2000, 30), (3000, 20), (500, 5)])]
    front, _ = report.pareto(points)
    assert [o.config.technique for o in front] == ["3", "0", "1"]


@pytest.mark.parametrize(("env", "said"), [
    ({"GPUS": "h100-sxm nope"}, "unknown GPU 'nope'"),
    ({"PARALLEL": "fsdp", "NPROC": "4", "GLOBAL_BATCH": "6"}, "GLOBAL_BATCH=6 is not a multiple of the 4 GPUs"),
    ({"PARALLEL": "fsdp", "NPROC": "16"}, "NPROC=16 on NODES=1 is 16 GPUs a node"),
    ({"TECHNIQUES": "lion nope"}, "unknown technique in TECHNIQUES: nope"),
    # 0.5 GiB less the 10% margin, 461 MiB: below Hopper's measured context (utils/plan/device.py)
    ({"GPU": "h100-sxm", "GPU_MEMORY_GIB": "0.5", "MEMORY_MARGIN": "0.1"}, "the CUDA context alone ("),
])
def test_bad_input_is_refused_before_planning(monkeypatch, tmp_path, capsys, env, said):
    for name, value in {"MODEL": "tiny", "TUNE_REPORT": str(tmp_path / "TUNE.md"), **env}.items():
        set_env(monkeypatch, name, value)
    assert tune.main() == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "TUNE.md").exists()


class ShardedPool(Pool):
    """As Pool, with 200,000 MiB of weights and optimizer state that FSDP2 shards over the GPUs."""

    def map(self, fn, givens, configs, gpus, depths):
        return [self.judged(dataclasses.replace(f, allocated_mib=f.allocated_mib + 200_000 / c.gpus,
                                                total_mib=f.total_mib + 200_000 / c.gpus))
                for f, c in zip(super().map(fn, givens, configs, gpus, depths), configs, strict=True)]


def test_a_model_no_one_gpu_holds_gets_the_fewest_gpus_with_fsdp2():
    given = dataclasses.replace(settings.read(env={}), techniques=())
    found = tune.search_gpu(ShardedPool(plans.budget_mib(by_key("h100-sxm"), given)), by_key("h100-sxm"), given,
                            None, 8, ("", 1))
    assert found.world == ("fsdp", 4)  # 2 GPUs hold 100,000 MiB each: more than an 80 GiB H100
    assert "on 4 with FSDP2" in found.note
    assert found.outcomes and all(o.config.gpus == 4 and o.config.parallel == "fsdp" for o in found.outcomes)
    assert found.outcomes[0].config.command().startswith("make fsdp NPROC=4 ")
    assert any(o.config.batch == 1 and o.config.accum == 2 for o in found.outcomes)  # the probe, planned whole


def test_compiled_forms_are_planned_at_the_whole_batch_and_at_the_split_that_fit():
    fitting = [search.Outcome(Config("flash+checkpointing", batch=2, accum=4), _figures(1, 10), search.FITS),
               search.Outcome(Config("fused", batch=8), _figures(1, 20), search.FITS)]
    pruned = space.Pruned()
    compiled = tune._compiled_of([Config("compile", "default")], fitting, 8, 1, pruned)
    # each block inside its checkpoint only where there is a checkpoint to be inside of
    assert {(c.technique, c.compile_mode, c.compile_scope, c.batch, c.accum) for c in compiled} == {
        (name, mode, scope, batch, accum) for mode in space.COMPILE_MODES for scope in catalog.COMPILE_SCOPES
        for name, batch, accum in (("flash+compile", 8, 1), ("flash+checkpointing+compile", 2, 4))
        if scope != "blocks_in_checkpoint" or "checkpointing" in name}
    assert pruned["compiled form not planned (its eager form is not among the 1 fastest that fit: COMPILE_TOP)"] == 1


def test_gpu_memory_gib_is_the_searched_cards_memory_and_sets_its_budget():
    given = dataclasses.replace(settings.read(env={}), gpus=("a100-80gb", "l4"), gpu_memory_gib=24.0)
    gpus = tune._gpus(given)
    assert [(g.key, g.memory_gib) for g in gpus] == [("a100-80gb", 24.0), ("l4", 24.0)]
    assert gpus[0].name == "A100 80GB at 24 GiB"
    assert plans.budget_mib(gpus[0], given) == pytest.approx(24 * 1024 * (1 - given.memory_margin))
    with pytest.raises(checks.BadInput, match="GPUS: "):
        tune._gpus(dataclasses.replace(given, gpus=("a100-81gb",)))


def test_a_real_plan_says_whether_its_step_runs_in_the_budget():
    given = dataclasses.replace(settings.read(env={"SUITE_MODEL": "tiny"}), techniques=())
    roomy, short = (plans.plan(dataclasses.replace(given, gpu_memory_gib=gib), Config("baseline", batch=4),
                               "h100-sxm", None) for gib in (0.9, 0.8))
    # the tiny step's device total on an H100, its 751 MiB context with it, is within 0.9 GiB less the margin
    # and over 0.8 GiB: the first runs in its budget, the second does not
    assert roomy.total_mib <= 0.9 * 1024 * (1 - given.memory_margin) and short.total_mib > 0.8 * 1024
    assert roomy.runs_in_budget and not short.runs_in_budget
    assert roomy.unfit(0.9 * 1024 * (1 - given.memory_margin)) == "" and short.unfit(0) == "does not fit"


def test_a_winner_that_changes_what_is_learnt_is_held_to_its_loss_falling_not_to_the_baselines():
    from utils.tune import verify

    base = pd.Series([5.0, 4.0, 3.0])
    same = verify.learning_verdict(Config("fused", batch=4), "baseline", base + 1e-4, base, "fp32")
    assert same[1] and same[0].startswith("still learns")
    drifted = verify.learning_verdict(Config("fused", batch=4), "baseline", base + 0.5, base, "fp32")
    assert not drifted[1] and "does **not** learn as the baseline does" in drifted[0]
    # LoRA trains other weights: its slower fall is what it is, not drift; a loss that does not fall still fails
    lora, line = verify.learning_verdict(Config("flash+lora", batch=4), "baseline", base + 0.5, base, "fp32")[::-1]
    assert lora and line.startswith("its loss falls") and "lora changes what is learnt (opted in)" in line
    flat = verify.learning_verdict(Config("flash+lora", batch=4), "baseline", pd.Series([5.0, 5.0, 5.1]), base, "fp32")
    assert not flat[1] and flat[0].startswith("its loss does **not** fall")
