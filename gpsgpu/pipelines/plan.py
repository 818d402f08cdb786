"""``gpsgpu plan``: MODEL/ -> PLAN/ (phase 1b)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gpsgpu import schema
from gpsgpu.blocklist import Blocklist
from gpsgpu.config import PlanConfig, as_dict
from gpsgpu.errors import UsageError
from gpsgpu.io.atomic import atomic_dir
from gpsgpu.io.metadata import Timings, build_metadata, write_metadata
from gpsgpu.io.model import read_model
from gpsgpu.io.plan import write_plan
from gpsgpu.ops import cpu
from gpsgpu.pipelines.engine_io import blocklist_for
from gpsgpu.pipelines.improved import (
    IMPROVED,
    cut_plan,
    has_host_rules,
    hosts_in_rows,
    improved_plan,
    model_mode,
    read_live,
    staged_plan,
    write_plan_rows,
)
from gpsgpu.plan import cut_blocklisted, plan_priors, probes_per_row
from gpsgpu.plan.budget import TAIL_LENGTH
from gpsgpu.plan.priors import N_ALLOWED

log = logging.getLogger(__name__)


def _skipped_probes(rows: Any, skipped: np.ndarray, length: int) -> int:
    """Probes the rows do not spend on the ``skipped`` addresses (a /24 of k rows skips each k times)."""
    if skipped.size == 0:
        return 0
    nets, rows_per_net = np.unique(rows[schema.PREFIX].to_numpy(np.uint32), return_counts=True)
    at = cpu.lookup(nets.astype(np.uint64), schema.prefix_of(skipped, length).astype(np.uint64))
    return int(rows_per_net[at[at >= 0]].sum())


def run_plan(
    model_dir: str | os.PathLike[str], output: str | os.PathLike[str], config: PlanConfig
) -> dict[str, Any]:
    """Write the priors plan of the model in ``model_dir`` into the folder ``output``."""
    output = Path(output)
    timings = Timings()
    with timings.step("read"):
        model = read_model(model_dir, rules=False, seed=config.stage in ("tail", "head-live"))
        blocklist = blocklist_for(config.blocklist)
    step = config.step if config.step is not None else int(model.params["step"])
    hitrate = config.hitrate if config.hitrate is not None else float(model.params["hitrate"])
    mode = model_mode(model)
    if config.stage != "all" and mode != IMPROVED:
        raise UsageError(
            f"--stage {config.stage} needs a model learned with 'gpsgpu learn --mode improved' (this one is "
            "compatible mode)"
        )
    with timings.step("plan"):
        if mode == IMPROVED:
            # Rows ranked by expected services per probe (improved mode's plan).
            plan = improved_plan(model_dir, model, step=step, hitrate=hitrate)
        else:
            plan = plan_priors(model.patterns, step=step, hitrate=hitrate)
        live_ips = read_live(model, config.live) if config.stage in ("tail", "head-live") else None
        # The tail skips the hosts known live where host rules rank their ports (live_tail).
        skip_live = config.stage == "tail" and has_host_rules(model_dir)
        if config.stage != "all":
            plan = staged_plan(
                plan, config.stage, live_ips=live_ips, part=config.stage_part, scanned=config.scanned,
                found=config.found, skip_live=skip_live,
            )  # fmt: skip
        row_step = TAIL_LENGTH if config.stage in ("tail", "head-live") else step
        plan = cut_plan(plan, config.budget)
        cut = cut_blocklisted(plan, step=row_step, blocklist=blocklist)
        skipped = np.zeros(0, np.uint32)
        scope = blocklist
        if skip_live:
            # The hosts known live in the tail's /24s go into the plan's blocklist.txt, which ZMap
            # (-b) and sim-scan honour.
            skipped = hosts_in_rows(live_ips, cut, length=TAIL_LENGTH)
            skipped = skipped[~np.asarray(blocklist.contains(skipped), bool)]
            scope = blocklist
            blocklist = blocklist.union(Blocklist.from_addresses(skipped))
    size = probes_per_row(row_step)
    counts = {
        "n_patterns": len(model.patterns),
        "n_rows": len(cut),
        "n_rows_blocklisted": len(plan) - len(cut),
        "n_ports": int(cut[schema.NEEDED_P].nunique()),
        "probes_per_row": size,
        "probes": len(cut) * size,
        "probes_after_blocklist": int(cut[N_ALLOWED].sum()) - _skipped_probes(cut, skipped, row_step),
        **({"known_hosts_skipped": int(skipped.size)} if config.stage == "tail" else {}),
    }
    metadata = build_metadata(
        command="plan",
        config=as_dict(config),
        inputs={"model": str(model_dir)},
        counts=counts,
        timings=timings,
        extra={
            "params": {
                "step": row_step,
                "hitrate": hitrate,
                "mode": mode,
                "budget": config.budget,
                **({"stage": config.stage, "model_step": step} if config.stage != "all" else {}),
            }
        },
    )
    with timings.step("write"), atomic_dir(output) as tmp:
        files = write_plan(
            cut, tmp, step=row_step, blocklist=blocklist, rate=config.rate, zmap=config.zmap,
            skips_known=skip_live, scope=scope,
        )  # fmt: skip
        if mode == IMPROVED:
            files["plan_rows"] = write_plan_rows(cut, tmp)
        write_metadata(tmp / "metadata.json", {**metadata, "outputs": files})
    if counts["n_rows_blocklisted"]:
        log.info("dropped %d plan rows that lie wholly in blocklisted space", counts["n_rows_blocklisted"])
    stage = "" if config.stage == "all" else f" ({config.stage})"
    print(
        f"gpsgpu: plan{stage}: {counts['n_rows']:,} (port, /{row_step}) rows on {counts['n_ports']:,} ports "
        f"({counts['n_rows_blocklisted']:,} wholly blocklisted, dropped): {counts['probes']:,} probes "
        f"({counts['probes_after_blocklist']:,} after the blocklist) -> {output}",
        file=sys.stderr,
    )
    return metadata
