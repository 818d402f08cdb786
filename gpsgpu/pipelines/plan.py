"""``gpsgpu plan``: MODEL/ -> PLAN/ (phase 1b)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from gpsgpu import schema
from gpsgpu.config import PlanConfig, as_dict
from gpsgpu.io.atomic import atomic_dir
from gpsgpu.io.metadata import Timings, build_metadata, write_metadata
from gpsgpu.io.model import read_model
from gpsgpu.io.plan import write_plan
from gpsgpu.pipelines.engine_io import blocklist_for
from gpsgpu.pipelines.improved import IMPROVED, cut_plan, improved_plan, model_mode, write_plan_rows
from gpsgpu.plan import cut_blocklisted, plan_priors, probes_per_row
from gpsgpu.plan.priors import N_ALLOWED

log = logging.getLogger(__name__)


def run_plan(
    model_dir: str | os.PathLike[str], output: str | os.PathLike[str], config: PlanConfig
) -> dict[str, Any]:
    """Write the priors plan of the model in ``model_dir`` into the folder ``output``."""
    output = Path(output)
    timings = Timings()
    with timings.step("read"):
        model = read_model(model_dir, rules=False, seed=False)
        blocklist = blocklist_for(config.blocklist)
    step = config.step if config.step is not None else int(model.params["step"])
    hitrate = config.hitrate if config.hitrate is not None else float(model.params["hitrate"])
    mode = model_mode(model)
    with timings.step("plan"):
        if mode == IMPROVED:
            # Rows ranked by expected services per probe (improved mode's plan).
            plan = improved_plan(model_dir, model, step=step, hitrate=hitrate)
        else:
            plan = plan_priors(model.patterns, step=step, hitrate=hitrate)
        plan = cut_plan(plan, config.budget)
        cut = cut_blocklisted(plan, step=step, blocklist=blocklist)
    size = probes_per_row(step)
    counts = {
        "n_patterns": len(model.patterns),
        "n_rows": len(cut),
        "n_rows_blocklisted": len(plan) - len(cut),
        "n_ports": int(cut[schema.NEEDED_P].nunique()),
        "probes_per_row": size,
        "probes": len(cut) * size,
        "probes_after_blocklist": int(cut[N_ALLOWED].sum()),
    }
    metadata = build_metadata(
        command="plan",
        config=as_dict(config),
        inputs={"model": str(model_dir)},
        counts=counts,
        timings=timings,
        extra={
            "params": {
                "step": step,
                "hitrate": hitrate,
                "mode": mode,
                "budget": config.budget,
            }
        },
    )
    with timings.step("write"), atomic_dir(output) as tmp:
        files = write_plan(cut, tmp, step=step, blocklist=blocklist, rate=config.rate, zmap=config.zmap)
        if mode == IMPROVED:
            files["plan_rows"] = write_plan_rows(cut, tmp)
        write_metadata(tmp / "metadata.json", {**metadata, "outputs": files})
    if counts["n_rows_blocklisted"]:
        log.info("dropped %d plan rows that lie wholly in blocklisted space", counts["n_rows_blocklisted"])
    print(
        f"gpsgpu: plan: {counts['n_rows']:,} (port, /{step}) rows on {counts['n_ports']:,} ports "
        f"({counts['n_rows_blocklisted']:,} wholly blocklisted, dropped): {counts['probes']:,} probes "
        f"({counts['probes_after_blocklist']:,} after the blocklist) -> {output}",
        file=sys.stderr,
    )
    return metadata
