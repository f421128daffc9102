"""What a checkpoint holds beyond the method's state when several processes train one run, and
the check that they still train one model.

Checkpoints hold the shared state once and each rank's own image pools and RNG under ``ranks``;
at every checkpoint the ranks compare digests of their weights (tag
``cgbench.ddp_weight_digests``) and the run fails if they differ.
"""

from __future__ import annotations

import torch

from cgbench import distributed
from cgbench.errors import ConfigError, RanksDiverged
from cgbench.methods.base import Method
from cgbench.protocol import Tags


def rank_state(method: Method) -> dict:
    """What differs between the ranks of a distributed run: the image pools (each rank's own
    fakes) and the global torch RNG."""
    return {"pools": {k: pool.state_dict() for k, pool in method.pools.items()}, "torch_rng": torch.get_rng_state()}


def load_training_state(method: Method, state: dict, ctx: distributed.Context) -> None:
    """Load a checkpoint: the shared state, then (when it has them) this rank's pools and RNG."""
    saved = state.get("world_size", 1)
    if saved != ctx.world_size:
        raise ConfigError(f"the checkpoint was written by {saved} processes; resume it with --nproc {saved}")
    method.load_state_dict(state["method"])
    torch.set_rng_state(state["torch_rng"])
    if "ranks" in state:
        mine = state["ranks"][ctx.rank]
        for k, pool in method.pools.items():
            pool.load_state_dict(mine["pools"][k], method.device)
        torch.set_rng_state(mine["torch_rng"])


def verify_same_weights(ctx: distributed.Context, method: Method, tracker, iteration: int) -> None:
    """Collective: every rank's weights digest; rank 0 records them (tag ``cgbench.ddp_weight_digests``),
    and every rank raises :class:`RanksDiverged` when they differ."""
    digests = distributed.all_gather(ctx, distributed.weights_digest(method.networks))
    tracker.set_tags({Tags.DDP_WEIGHT_DIGESTS: ",".join(d[:12] for d in digests)})
    if len(set(digests)) > 1:
        raise RanksDiverged(iteration, digests)

