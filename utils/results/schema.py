"""The results.csv schema, in one place: every column with what it holds, and its type.
Stdlib only: everything that reads or writes a results file may import it."""

# column -> what it holds (docs/reference.md's column table is made from this)
COLUMNS = {
    "run_id": "one id per script run; every row of the run carries it",
    "timestamp_utc": "when the run started (ISO 8601, UTC)",
    "technique": "the script that ran (baseline, bf16, ...)",
    "repeat": "which repeat of the technique this run was (0, 1, ... with REPEATS=N)",
    "status": "ok, skipped, oom or error",
    "reason": "why, for any status but ok",
    "phase": "the run's phase: warmup or measured, or eval for an evaluation on held-out data; predicted (make plan's "
    "rows) or maxbatch (make maxbatch's answers); blank on a status-only row (skipped / oom / error)",
    "step": "step index within its phase, from 0",
    "step_ms": "time of one optimizer step (all its parts) in ms: CUDA events on GPU, perf_counter on CPU",
    "forward_ms": "part of the step: forward pass and loss, ms (summed over micro-batches; blank under CUDA graphs)",
    "backward_ms": "part of the step: backward pass, ms (summed over micro-batches; blank under CUDA graphs)",
    "optimizer_ms": "part of the step: optimizer step and zero_grad, ms (blank under CUDA graphs)",
    "comm_ms": "predicted rows of N GPUs: the step's collectives' own time, ms, hidden behind compute or not",
    "comm_exposed_ms": "predicted rows of N GPUs: the part of comm_ms the step waits for, ms (within step_ms)",
    "tokens_per_s": "batch x seq x accum x world_size / step time (every rank's tokens; the slowest rank's time)",
    "device_tokens_per_s": "tokens_per_s per device: tokens_per_s / world_size",
    "wall_tokens_per_s": "the phase's tokens / its wall-clock from first step to final sync "
    "(gaps, data, host included); same on every row of the phase",
    "tflops": "model TFLOP/s achieved: flops_per_token x tokens_per_s",
    "mfu": "model FLOPs utilisation: tflops / peak_tflops (blank where the peak is unknown)",
    "loss": "training loss of that step (mean over its micro-batches)",
    "scaler_skipped": "fp16's GradScaler skipped this step's update (inf/nan gradients); False without a scaler",
    "peak_alloc_mib": "CUDA only: peak memory held by tensors during the phase, MiB (predicted rows: the planned "
    "step's, cuBLAS workspaces included)",
    "peak_reserved_mib": "CUDA only: peak memory reserved by PyTorch's caching allocator during the phase, MiB "
    "(predicted rows: the allocator's replay of the planned step)",
    "device_total_mib": "CUDA only: the device memory in use at the phase's end, cudaMemGetInfo's total - free (what "
    "nvidia-smi shows for a process alone on the GPU), MiB; predicted rows: reserved + the CUDA context",
    "peak_rss_mib": "the process's peak resident set size so far (host memory), MiB",
    "model": "the model: a preset (tiny, gpt2, ...), hf:<config> or path/to/file.py:function",
    "n_params": "parameters in the model (tied embedding counted once)",
    "flops_per_token": "model FLOPs per token for forward + backward: 6N + 12 x layers x width x seq (PaLM appendix B) "
    "for the suite's GPT, or measured (flops_source); less 2 per frozen matmul weight (no weight gradient: lora)",
    "flops_source": "how flops_per_token was had: formula (the suite's models) or measured (FlopCounterMode over one "
    "forward + backward on fake tensors at this seq: models from hf: and files)",
    "peak_tflops": "dense peak TFLOP/s of the device at this dtype (datasheet table or PEAK_TFLOPS); blank if unknown",
    "batch": "sequences per step",
    "seq": "tokens per sequence",
    "data": "DATA as given: coinflip, fixed (one batch reused), markov, or the text or .bin token file read",
    "accum": "micro-batches of batch sequences per optimizer step (gradient accumulation; 1 without)",
    "grad_clip": "the gradients' global norm was clipped to this before each optimizer step (GRAD_CLIP); blank: "
    "not clipped",
    "dtype": "compute precision that ran: fp32, tf32, bf16-autocast, fp16-autocast or bf16-weights (weights, "
    "gradients and optimizer state in bf16)",
    "mlp": "MLP of the blocks: gelu, swiglu or geglu; own for a model from hf: or a file",
    "attention": "attention kernel that ran: manual, sdpa:flash, sdpa:efficient, sdpa:cudnn, sdpa:math or flash_attn; "
    "none (no attention) or own (a model from a file with no attention switch)",
    "optimizer": "optimizer class that ran (module.Class)",
    "fused": "whether the optimizer step ran as fused kernels",
    "compiled": "whether the model ran under torch.compile",
    "compile_mode": "torch.compile mode (default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs); "
    "blank if not compiled",
    "compile_scope": "what torch.compile compiled: model (the whole model, one graph), blocks (each block its own "
    "graph, the rest eager; a checkpoint's recompute inside the backward graph) or blocks_in_checkpoint (each block's "
    "graph inside its checkpoint, which reruns the compiled forward in backward); blank if not compiled",
    "cuda_graphs": "whether the whole step was captured once as a CUDA graph and replayed",
    "checkpointing": "whether each block's activations were recomputed in backward",
    "checkpoint_policy": "what checkpointing recomputed: block (each block whole, from its input) or selective "
    "(torchtitan's per-op policy: attention's and every other matmul's outputs saved, the rest recomputed); "
    "blank without checkpointing",
    "loss_chunks": "the loss's cross-entropy computed in this many chunks of tokens (1: whole logits)",
    "chunk_logits": "how backward had each chunk's logits: recompute (the chunk projected again under checkpointing) "
    "or keep (every chunk's kept, torchtune's CEWithChunkedOutputLoss); blank for a whole loss",
    "activation_offload": "whether the activations saved for backward were kept in host memory",
    "step_in_backward": "whether each parameter's optimizer step ran in backward, as its gradient was ready",
    "adapter": "what trained, where not every weight: LoRA's rank, alpha, dropout and target modules; blank: all",
    "trainable_params": "parameters that train (require a gradient); n_params where every weight trains",
    "lr": "learning rate the optimizer ran with",
    "seed": "seed for weights and data",
    "parallel": "none, ddp or fsdp (make ddp / make fsdp: torchrun, one process per device; fsdp under bf16 autocast "
    "on GPUs all-gathers each block's weights in bf16)",
    "world_size": "processes training together (1 without torchrun); runs of another world size are not compared",
    "backend": "torch.distributed backend: nccl on GPUs, gloo on CPUs; blank for one process",
    "device": "GPU name, or CPU model with thread count",
    "driver": "NVIDIA driver version (blank on CPU)",
    "cuda": "CUDA version torch was built with (blank for a CPU build)",
    "torch": "torch version",
    "git_sha": "commit of this suite that ran (+dirty if its code had local changes; docs/results/ is figures)",
    "host": "machine name",
    # does it still learn (evaluation rows, phase=eval; blank on training rows)
    "layers": "layers (blocks) of the model: LAYERS, or the preset's",
    "blocks": "the blocks checkpointing wraps and FSDP2 shards, and how many: blocks (12) for the suite's models, "
    "transformer.h (12) found in a foreign one (; largest ModuleList or ; BLOCKS where so found)",
    "loss_floor": "entropy (rate) of the data, the lowest loss any model can reach, nats; blank where unknown (files)",
    "train_steps": "eval rows: training steps taken before this evaluation (warm-up included)",
    "train_s": "eval rows: training wall-clock before this evaluation, s (warm-up included, evaluations excluded)",
    "train_loss": "eval rows: mean training loss over the steps since the previous evaluation",
    "val_loss": "eval rows: mean loss on the run's EVAL_BATCHES held-out batches, nats",
    "val_ppl": "eval rows: validation perplexity, exp(val_loss)",
    "eval_ms": "eval rows: time the evaluation took, ms (never part of step_ms or train_s)",
    # memory. Older files lack these columns and still read (blank = a measured row)
    "kind": "measured (a run on this device) or predicted (make plan: fake tensors, no device; never in step-time "
    "statistics)",
    "mem_params_mib": "memory breakdown at the peak of one extra untimed step under MemTracker (predicted rows: "
    "the planned step's): parameters and buffers, MiB",
    "mem_grads_mib": "breakdown: gradients, MiB",
    "mem_optimizer_mib": "breakdown: optimizer state (8-bit states at their real size; with the step's scratch "
    "when the peak falls in the optimizer step), MiB",
    "mem_activations_mib": "breakdown: activations saved for backward (and their recomputation), MiB",
    "mem_temporaries_mib": "breakdown: temporaries (backward's activation gradients, optimizer scratch), MiB",
    "mem_peak_mib": "the tracked step's peak, MiB (the breakdown sums to it); predicted rows: the planned step's "
    "tensor peak (the breakdown's sum; with cuBLAS workspaces and the allocator's rounding: peak_alloc_mib)",
    "alloc_retries": "CUDA: the caching allocator's num_alloc_retries so far in the run (cache flushed and retried: "
    "slow steps); blank on CPU",
    "alloc_ooms": "CUDA: the caching allocator's num_ooms so far in the run; blank on CPU",
}
HEADER = ",".join(COLUMNS) + "\n"
STATUSES = ("ok", "skipped", "oom", "error")
# every column is a number but these (read as text) and the booleans: a new column is numeric unless listed
TEXT = (
    "run_id", "timestamp_utc", "technique", "status", "reason", "phase", "model", "data", "dtype", "mlp", "attention",
    "optimizer", "compile_mode", "parallel", "backend", "device", "driver", "cuda", "torch", "git_sha", "host", "kind",
    "flops_source", "blocks", "adapter", "checkpoint_policy", "compile_scope", "chunk_logits",
)
BOOLEAN = ("fused", "compiled", "checkpointing", "cuda_graphs", "scaler_skipped", "activation_offload",
           "step_in_backward")
NUMERIC = tuple(c for c in COLUMNS if c not in TEXT + BOOLEAN)

# the memory breakdown's parts (MemTracker's reference types, grouped), in column order
# what ran (the run's configuration as a technique applied it: utils/techniques/run.py Run.record
# writes them, the report's summary carries them per technique)
WHAT_RAN = ("dtype", "attention", "optimizer", "fused", "compiled", "checkpointing", "checkpoint_policy", "mlp",
            "compile_mode", "compile_scope", "accum", "grad_clip", "cuda_graphs", "loss_chunks", "chunk_logits",
            "activation_offload", "step_in_backward", "adapter", "trainable_params")
MEMORY_PARTS = ("params", "grads", "optimizer", "activations", "temporaries")
MEMORY_COLUMNS = tuple(f"mem_{part}_mib" for part in MEMORY_PARTS) + ("mem_peak_mib",)
