"""The fields that say which run a row belongs to, built in one place for every writer (a
measured run, a plan, a maxbatch answer)."""

import uuid
from datetime import datetime, timezone


def identity(cfg, technique, device, **fields):
    """A new run's identity: its id and start time, what ran (technique, repeat), at which
    model and shape, on which data and seed, how many processes, where (`device`: the
    environment's columns) and any further `fields`."""
    return {
        "run_id": uuid.uuid4().hex[:12],
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "technique": technique,
        "repeat": cfg.repeat,
        "model": cfg.model,
        "layers": cfg.layers,
        "batch": cfg.batch,
        "seq": cfg.seq,
        "data": cfg.data,
        "seed": cfg.seed,
        "parallel": cfg.world.kind or "none",
        "world_size": cfg.world.size,
        "backend": cfg.world.backend,
        **device,
        **fields,
    }
