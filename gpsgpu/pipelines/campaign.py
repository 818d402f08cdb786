"""``gpsgpu campaign start|next|status|run``: the GPS loop as one resumable folder.

``start`` fixes the model, the schedule and the scope and writes the first step; ``next`` folds what
the last step's scan found into the state and writes the next step (:mod:`gpsgpu.campaign.schedule`
decides it); ``status`` tells probes and services per step; ``run --sim NET/`` plays the scanner on a
simulated Internet, reading exactly the files a user's scanner would read. Every step folder is
written whole and atomically, so a kill at any point leaves the last complete step, and ``next``
given a found file it has counted before does not count it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from gpsgpu import schema
from gpsgpu.backend import Backend, to_numpy
from gpsgpu.blocklist import Blocklist
from gpsgpu.campaign.schedule import (
    DONE,
    ROWS,
    SCHEDULES,
    TARGETS,
    Context,
    Options,
    State,
    Step,
    cidr_sizes,
    in_step,
    initial_state,
    next_step,
    observe,
    position_in_step,
)
from gpsgpu.errors import InputError, UsageError
from gpsgpu.io.atomic import atomic_dir
from gpsgpu.io.campaign import (
    ASN_FILE,
    TARGET_FILES,
    Campaign,
    append_log,
    file_digest,
    model_fingerprint,
    read_campaign,
    read_found,
    read_log,
    read_state,
    read_step,
    read_summary,
    step_dirs,
    write_campaign,
    write_step,
)
from gpsgpu.io.metadata import build_metadata, write_metadata
from gpsgpu.io.model import read_model
from gpsgpu.io.parquet import write_services
from gpsgpu.io.plan import ROWS_FILE
from gpsgpu.ops import cpu

log = logging.getLogger(__name__)


def _say(message: str) -> None:
    print(f"gpsgpu: campaign: {message}", file=sys.stderr, flush=True)


def _quiet(message: str) -> None:
    log.debug("campaign: %s", message)


# --- the model's side ----------------------------------------------------------------------------


def build_context(campaign: Campaign, scope: Blocklist) -> Context:
    """What the schedule reads of the model: its tables and the plan rows, once per command."""
    from gpsgpu.pipelines.improved import IMPROVED, improved_plan, model_mode
    from gpsgpu.plan import plan_priors

    if not campaign.model.is_dir():
        raise InputError(f"the campaign's model {campaign.model} is gone; put it back to go on")
    if model_fingerprint(campaign.model) != campaign.model_fingerprint:
        raise InputError(
            f"the campaign's model {campaign.model} changed since the campaign started (learned again?); "
            "start a new campaign with it"
        )
    model = read_model(campaign.model)
    mode = model_mode(model)
    if campaign.options.schedule == "improved":
        if mode != IMPROVED:
            raise UsageError(
                f"--schedule improved needs a model learned with 'gpsgpu learn --mode improved' "
                f"({campaign.model} is compatible mode; or use --schedule compatible)"
            )
        plan = improved_plan(campaign.model, model, step=campaign.step, hitrate=campaign.hitrate)
    else:
        if mode == IMPROVED:
            raise UsageError(
                f"--schedule compatible runs GPS exactly: it needs a model learned in compatible mode "
                f"({campaign.model} is improved mode; or use --schedule improved)"
            )
        plan = plan_priors(model.patterns, step=campaign.step, hitrate=campaign.hitrate)
    seed = pd.DataFrame(
        {
            schema.IP: np.asarray(model.seed[schema.IP], np.uint32),
            schema.PORT: np.asarray(model.seed[schema.PORT], np.uint16),
        }
    )
    return Context(
        options=campaign.options,
        step=campaign.step,
        hitrate=campaign.hitrate,
        seed_fraction=campaign.seed_fraction,
        blocklist=scope,
        rules=model.rules,
        seed=seed,
        plan=plan,
        preset=str(model.params.get("preset", "gps2022")),
        host_rules=model.host_rules,
        seed_hosts=np.unique(seed[schema.IP].to_numpy(np.uint32)),
    )


# --- start ---------------------------------------------------------------------------------------


def run_start(
    model_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    options: Options,
    blocklist: tuple[str, ...] = (),
    step: int | None = None,
    hitrate: float | None = None,
    seed_fraction: float | None = None,
    rate: int = 10000,
    zmap: str = "zmap",
    asn_file: str | None = None,
    echo: bool = True,
) -> Path:
    """Start a campaign in ``output``; returns the first step's folder (with ``echo``, printed on
    stdout)."""
    from gpsgpu.io.model import read_model_metadata
    from gpsgpu.pipelines.engine_io import blocklist_for
    from gpsgpu.plan.budget import DEFAULT_SEED_FRACTION

    if options.schedule not in SCHEDULES:
        raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}, not {options.schedule!r}")
    if options.budget is not None and options.budget < 1:
        raise UsageError(f"--budget must be at least 1 probe, not {options.budget}")
    output = Path(output)
    model_dir = Path(model_dir).resolve()
    params = read_model_metadata(model_dir).get("params", {})
    campaign = Campaign(
        path=output,
        model=model_dir,
        model_fingerprint=model_fingerprint(model_dir),
        options=options,
        step=int(step if step is not None else params.get("step", 16)),
        hitrate=float(hitrate if hitrate is not None else params.get("hitrate", 0.00001)),
        seed_fraction=float(
            seed_fraction if seed_fraction is not None else params.get("seed_fraction", DEFAULT_SEED_FRACTION)
        ),
        rate=int(rate),
        zmap=zmap,
    )
    scope = blocklist_for(blocklist)
    if asn_file is not None:
        from gpsgpu.io.asn import read_asn_table

        read_asn_table(asn_file)  # checked now, not at the first 'next'
    ctx = build_context(campaign, scope)
    state = initial_state(ctx)
    first, state = next_step(ctx, state, None)
    with atomic_dir(output) as tmp:
        write_campaign(tmp, campaign, scope)
        if asn_file is not None:
            shutil.copyfile(asn_file, tmp / ASN_FILE)
        metadata = build_metadata(
            command="campaign start",
            config={**options.to_dict(), "blocklist": list(blocklist), "rate": rate, "zmap": zmap},
            inputs={"model": str(model_dir)},
            extra={"params": {"step": campaign.step, "hitrate": campaign.hitrate}},
        )
        write_metadata(tmp / "metadata.json", metadata)
        write_step(campaign, scope, first, state, root=tmp)
    folder = _step_folder(output, first.number)
    (_say if echo else _quiet)(
        f"started a {options.schedule} campaign of {campaign.model}"
        + (f" within {options.budget:,} probes" if options.budget else "")
        + f"; step {first.number:03d}: {_describe(first)}"
    )
    if echo:
        print(folder)
    return folder


def _step_folder(camp: Path, number: int) -> Path:
    from gpsgpu.io.campaign import step_dir

    return step_dir(camp, number)


def _describe(step: Step) -> str:
    if step.kind == DONE:
        return f"done ({step.reason})"
    listed = (
        f"{len(step.cidrs):,} (port, network) pairs"
        if step.kind == ROWS
        else f"{len(step.targets):,} targets"
    )
    return (
        f"{step.kind}, {listed}, {step.probes:,} probes, ~{step.expected_services:,.0f} services expected: "
        f"{step.reason}"
    )


# --- next ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Session:
    """A campaign opened for one or more ``next`` calls (``run`` keeps it across steps)."""

    campaign: Campaign
    scope: Blocklist
    ctx: Context | None = None

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> Session:
        campaign, scope = read_campaign(directory)
        return cls(campaign, scope)

    def context(self) -> Context:
        if self.ctx is None:
            self.ctx = build_context(self.campaign, self.scope)
        return self.ctx

    def current(self, *, state: bool = True) -> tuple[Path, Step, State | None]:
        """The newest complete step folder, its step and (``state``) the state after it; the log made
        whole."""
        dirs = step_dirs(self.campaign.path)
        if not dirs:
            raise InputError(f"{self.campaign.path}: no complete step; start the campaign again")
        logged = {entry.get("step") for entry in read_log(self.campaign.path)}
        for folder in dirs:
            if int(folder.name) not in logged:  # a kill came between the step and its log line
                append_log(self.campaign.path, read_summary(folder))
        last = dirs[-1]
        return last, read_step(last), read_state(last) if state else None


def run_next(
    directory: str | os.PathLike[str],
    found: list[str],
    *,
    fmt: str = "auto",
    max_reject_rate: float | None = None,
    session: Session | None = None,
    echo: bool = True,
) -> Path:
    """Fold what the current step's scan found into the campaign and write the next step; returns
    (and, with ``echo``, prints on stdout) the folder of the step to run now."""
    say = _say if echo else _quiet
    from gpsgpu.pipelines.engine_io import read_scan

    session = session or Session.open(directory)
    camp = session.campaign.path
    folder, step, state = session.current()
    assert state is not None
    if step.kind == DONE:
        say(f"the campaign is done ({step.reason}); 'gpsgpu campaign status {camp}' tells what it found")
        if echo:
            print(folder)
        return folder
    if not found:
        what = (
            f"{ROWS_FILE}: scan it (commands.sh runs ZMap)" if step.kind == ROWS else "targets.txt: probe it"
        )
        raise UsageError(
            f"step {step.number:03d} ({step.kind}, {step.probes:,} probes) is waiting for what its scan "
            f"found: {folder}/{what}, then 'gpsgpu campaign next {camp} --found RESULTS'"
        )
    with _spooled(found, camp) as paths:
        # A file that brought services is counted once (by its contents); a scan that found nothing
        # may look the same for two steps (an empty file) and counts for each.
        digests = [file_digest(p) for _, p in paths]
        given = [(name, p, d) for (name, p), d in zip(paths, digests, strict=True) if d not in state.ingested]
        given = list({d: (name, p, d) for name, p, d in given}.values())  # one file given twice counts once
        if not given:
            say(
                f"{', '.join(found)}: already counted (the same contents were given before); "
                f"step {step.number:03d} is still the one to run"
            )
            if echo:
                print(folder)
            return folder
        asn_path = camp / ASN_FILE
        asn_table = None
        if asn_path.is_file():
            from gpsgpu.io.asn import read_asn_table

            asn_table = read_asn_table(str(asn_path))
        frames, files = [], []
        for name, path, digest in given:
            if os.path.getsize(path) == 0:  # a scanner's empty output: nothing found
                part = schema.empty_services(pd)
            else:
                part, _ = read_scan(
                    [path], backend=Backend.CPU, fmt=fmt, max_reject_rate=max_reject_rate, what="--found",
                    allow_empty=True, asn_table=asn_table, port_flag=False,
                )  # fmt: skip
                part = part.to_pandas() if hasattr(part, "to_pandas") else part
            frames.append(part)
            files.append({"path": name, "sha256": digest, "records": len(part)})
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame = frame.to_pandas() if hasattr(frame, "to_pandas") else frame
    ip = np.asarray(to_numpy(frame[schema.IP]), np.uint32)
    port = np.asarray(to_numpy(frame[schema.PORT]), np.uint16)
    inside = in_step(step, ip, port)
    services = frame[inside].reset_index(drop=True)
    key = schema.pack_service(ip[inside], port[inside])
    services = services.iloc[np.unique(key, return_index=True)[1]].reset_index(drop=True)
    ctx = session.context()
    after = observe(ctx, state, step, services)
    after.outside += int((~inside).sum())
    after.ingested = [*state.ingested, *(f["sha256"] for f in files if f["records"])]
    observed = _observed(camp, after.unranked, step.number, services)
    following, after = next_step(ctx, after, observed)
    previous = {
        "step": step.number,
        "files": files,
        "records": len(frame),
        "in_step": int(inside.sum()),
        "outside": int((~inside).sum()),
        "new_services": int(after.found - state.found),
    }
    skip = after.live if following.phase == "tail" and ctx.host_rules is not None else None
    target = write_step(
        session.campaign, session.scope, following, after, found=services, previous=previous, skip=skip
    )
    outside = f" ({previous['outside']:,} outside the step, counted apart)" if previous["outside"] else ""
    say(
        f"step {step.number:03d} found {previous['new_services']:,} new services{outside}; "
        f"step {following.number:03d}: {_describe(following)}"
    )
    if echo:
        print(target)
    return target


def _observed(camp: Path, unranked: list[int], current: int, services: pd.DataFrame) -> pd.DataFrame:
    """The services found by the steps no ranking has used yet (the current one's in memory)."""
    frames = [read_found(camp, number, Backend.CPU) for number in unranked if number != current]
    if current in unranked:
        frames.append(services)
    frames = [f for f in frames if len(f)]
    if not frames:
        return services.iloc[:0]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


@contextlib.contextmanager
def _spooled(found: list[str], camp: Path) -> Any:
    """The found files as ``(name given, path)``; ``-`` (stdin) is spooled to a temporary file beside
    the campaign (its contents are hashed, so the same results piped twice count once)."""
    paths, temps = [], []
    try:
        for path in found:
            if path == "-":
                with tempfile.NamedTemporaryFile(
                    prefix=".stdin.", suffix=".tmp", dir=camp, delete=False
                ) as handle:
                    for block in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
                        handle.write(block)
                temps.append(handle.name)
                paths.append(("-", handle.name))
            else:
                if not Path(path).exists():
                    raise InputError(f"--found {path}: no such file")
                paths.append((path, path))
        yield paths
    finally:
        for name in temps:
            with contextlib.suppress(OSError):
                os.unlink(name)


# --- status --------------------------------------------------------------------------------------


def status_rows(directory: str | os.PathLike[str]) -> tuple[Campaign, list[dict[str, Any]]]:
    """One row per step: what it listed, what its scan found, and the running totals."""
    campaign, _ = read_campaign(directory)
    summaries = [read_summary(folder) for folder in step_dirs(campaign.path)]
    found_by = {s["previous"]["step"]: s["previous"] for s in summaries if s.get("previous")}
    rows, probes, found = [], 0, 0
    for s in summaries:
        result = found_by.get(s["step"])
        if s["kind"] != DONE and result is not None:
            probes += int(s["probes"])
            found += int(result["new_services"])
        rows.append(
            {
                "step": s["step"],
                "kind": s["kind"],
                "phase": s["phase"],
                "pairs": s.get("pairs", 0),
                "probes": s["probes"],
                "expected_services": s["expected_services"],
                "found": None if result is None else int(result["new_services"]),
                "outside": None if result is None else int(result["outside"]),
                "total_probes": probes,
                "total_found": found,
                "reason": s["reason"],
            }
        )
    return campaign, rows


def run_status(
    directory: str | os.PathLike[str], *, as_json: bool = False, plot: bool = True
) -> dict[str, Any]:
    """Print the campaign's steps and totals; write ``CAMP/status.png`` (services against probes)."""
    import json

    from gpsgpu.io.model import read_model

    campaign, rows = status_rows(directory)
    n_seed = len(read_model(campaign.model, rules=False).seed) if campaign.model.is_dir() else 0
    # The seed scanned a seed_fraction sample of the addresses on every port: the services out there
    # are about its services over that fraction.
    estimate = n_seed / campaign.seed_fraction if n_seed else None
    done = rows[-1]["kind"] == DONE if rows else False
    total_probes = rows[-1]["total_probes"] if rows else 0
    total_found = rows[-1]["total_found"] if rows else 0
    facts = {
        "campaign": str(campaign.path),
        "schedule": campaign.options.schedule,
        "budget": campaign.options.budget,
        "steps": rows,
        "probes": total_probes,
        "services_found": total_found,
        "services_estimated": estimate,
        "expected_coverage": None if not estimate else total_found / estimate,
        "done": done,
    }
    if plot and rows:
        facts["plot"] = str(_plot_status(campaign, rows))
    if as_json:
        print(json.dumps(facts, indent=2))
        return facts
    lines = [
        "| step | kind | phase | pairs | probes | found | outside | total probes | total found |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        found = (
            "pending"
            if r["found"] is None and r["kind"] != DONE
            else ("" if r["found"] is None else f"{r['found']:,}")
        )
        outside = "" if r["outside"] is None else f"{r['outside']:,}"
        lines.append(
            f"| {r['step']:03d} | {r['kind']} | {r['phase']} | {r['pairs']:,} | {r['probes']:,} "
            f"| {found} | {outside} | {r['total_probes']:,} | {r['total_found']:,} |"
        )
    print("\n".join(lines))
    coverage = (
        f"; expected coverage {100 * facts['expected_coverage']:.1f}% of ~{estimate:,.0f} services "
        f"(seed services over the seed fraction {campaign.seed_fraction:g})"
        if estimate
        else ""
    )
    state = "done" if done else f"waiting for step {rows[-1]['step']:03d}'s results" if rows else "empty"
    print(
        f"\n{campaign.options.schedule} campaign, {state}: {total_probes:,} probes found "
        f"{total_found:,} services{coverage}"
    )
    if "plot" in facts:
        print(f"plot: {facts['plot']}")
    return facts


def _plot_status(campaign: Campaign, rows: list[dict[str, Any]]) -> Path:
    """Services found against probes, in scan order within each step (:func:`campaign_events`):
    the distinct services the scans found that the seed did not hold; dots end the steps."""
    from gpsgpu.evaluate.plots import _pyplot, _save
    from gpsgpu.predict.ranked import known_keys

    found, cost = campaign_events(campaign.path)
    seed = read_model(campaign.model, rules=False).seed if campaign.model.is_dir() else None
    keys = np.concatenate([np.zeros(0, np.uint64), *found])
    event = np.repeat(np.arange(len(found)), [f.size for f in found])
    fresh = ~cpu.sorted_isin(keys, known_keys(seed))
    # A service counts at the first event that found it (events are in scan order).
    first = np.unique(keys[fresh], return_index=True)[1]
    new = np.bincount(event[fresh][first], minlength=len(found))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(np.cumsum([0, *cost]) / 1e6, np.cumsum([0, *new]), lw=1.6)
    ends = [r for r in rows if r["found"] is not None]
    ax.plot([r["total_probes"] / 1e6 for r in ends], [r["total_found"] for r in ends], ".", color="black")
    ax.set_xlabel("probes (millions)")
    ax.set_ylabel("services found")
    ax.set_title(f"{campaign.options.schedule} campaign: services found against probes")
    ax.grid(True, alpha=0.3)
    path = _save(fig, campaign.path / "status.png")
    plt.close(fig)
    return path


# --- run against the simulated Internet ----------------------------------------------------------


def read_rows_file(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(port, network, length)`` of a step's ``rows.csv``, as a scanner reads it."""
    path = folder / ROWS_FILE
    if path.stat().st_size == 0:
        return np.zeros(0, np.uint16), np.zeros(0, np.uint32), np.zeros(0, np.uint8)
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["port", "cidr"]),
        convert_options=pacsv.ConvertOptions(column_types={"port": pa.uint16(), "cidr": pa.string()}),
    )
    parts = pc.split_pattern(table["cidr"].combine_chunks(), "/")
    flat = pc.list_flatten(parts)
    address = flat.filter(pa.array(np.arange(len(flat)) % 2 == 0))
    length = np.asarray(pc.cast(flat.filter(pa.array(np.arange(len(flat)) % 2 == 1)), pa.uint8()))
    return np.asarray(table["port"]).astype(np.uint16), schema.ip_from_str(address).astype(np.uint32), length


def read_targets_file(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(ip, port)`` of a step's ``targets.txt`` (``ip:port`` lines), as a prober reads it."""
    path = folder / TARGET_FILES["gps"]
    if path.stat().st_size == 0:
        return np.zeros(0, np.uint32), np.zeros(0, np.uint16)
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["ip", "port"]),
        parse_options=pacsv.ParseOptions(delimiter=":"),
        convert_options=pacsv.ConvertOptions(column_types={"ip": pa.string(), "port": pa.uint16()}),
    )
    return schema.ip_from_str(table["ip"].combine_chunks()).astype(np.uint32), np.asarray(
        table["port"]
    ).astype(np.uint16)


def sim_scan_step(scanner: Any, folder: Path) -> tuple[Any, int]:
    """What scanning a step folder's ``rows.csv`` (or probing its ``targets.txt``) finds on the
    simulated Internet: the services frame and the probes spent."""
    from gpsgpu.sim.internet import ServiceArrays
    from gpsgpu.sim.scanner import services_at

    before = scanner.n_probes
    if (folder / ROWS_FILE).is_file():
        ports, networks, lengths = read_rows_file(folder)
        parts = []
        for length in np.unique(lengths).tolist():
            sel = lengths == length
            parts.append(scanner.scan(ports[sel], networks[sel], int(length)))
        if not parts:
            parts.append(scanner.scan(np.zeros(0, np.uint16), np.zeros(0, np.uint32), 24))
        found = ServiceArrays.concat(scanner.xp, parts)
        return scanner.internet.to_frame(found), scanner.n_probes - before
    ip, port = read_targets_file(folder)
    hit = np.asarray(to_numpy(scanner.probe(ip, port)), bool)
    return services_at(scanner.internet, schema.pack_service(ip[hit], port[hit])), scanner.n_probes - before


def run_sim(
    directory: str | os.PathLike[str], net: str | os.PathLike[str], *, truth: Any = None, echo: bool = True
) -> dict[str, Any]:
    """Run the campaign to its end against the simulated Internet ``net``: scan each step's files,
    hand what they found to ``next``; resumes where the campaign stands."""
    from gpsgpu.pipelines.simulate import open_net
    from gpsgpu.sim.scanner import SimScanner

    started = time.perf_counter()
    session = Session.open(directory)
    internet, _ = open_net(net, Backend.CPU)
    scanner = SimScanner(internet, truth=truth)
    camp = session.campaign.path
    n = 0
    while True:
        folder, step, _ = session.current(state=False)  # next reads the state
        if step.kind == DONE:
            break
        found, _ = sim_scan_step(scanner, folder)
        spool = camp / f".sim-found-{step.number:03d}.{os.getpid()}.tmp"
        write_services(found, spool)
        try:
            if run_next(camp, [str(spool)], fmt="services", session=session, echo=echo) == folder:
                raise InputError(f"{folder}: the campaign did not move on from this step")
        finally:
            with contextlib.suppress(OSError):
                spool.unlink()
        n += 1
    _, rows = status_rows(camp)
    total = rows[-1] if rows else {"total_probes": 0, "total_found": 0}
    (_say if echo else _quiet)(
        f"run --sim: {n} steps scanned in {time.perf_counter() - started:.1f} s; "
        f"{total['total_probes']:,} probes found {total['total_found']:,} services"
    )
    return {"steps": rows, "probes": total["total_probes"], "found": total["total_found"]}


# --- events for curves ----------------------------------------------------------------------------


def campaign_events(
    directory: str | os.PathLike[str], *, chunks: int = 64
) -> tuple[list[np.ndarray], list[int]]:
    """The campaign as events in scan order: each step cut into up to ``chunks`` pieces of its list,
    with the service keys each piece found and the probes it cost (for coverage curves)."""
    camp = Path(directory)
    found_keys: list[np.ndarray] = []
    costs: list[int] = []
    folders = step_dirs(camp)
    for folder in folders[:-1]:  # the last step's scan has not been folded in
        step = read_step(folder)
        if step.kind == DONE:
            break
        found = read_found(camp, step.number, Backend.CPU)
        ip = np.asarray(found[schema.IP], np.uint32)
        port = np.asarray(found[schema.PORT], np.uint16)
        keys = schema.pack_service(ip, port)
        at = position_in_step(step, ip, port)  # every found service is in its step (next made sure)
        size = np.ones(len(step.targets), np.int64) if step.kind == TARGETS else cidr_sizes(step.cidrs)
        # Pieces of equal probes in list order (a target is one probe).
        spent = np.cumsum(size)
        piece = ((spent - size) * chunks) // max(int(spent[-1]) if spent.size else 1, 1)
        cost = np.bincount(piece, weights=size, minlength=chunks).astype(np.int64)
        found_piece = piece[at] if keys.size else np.zeros(0, np.int64)
        order = np.argsort(found_piece, kind="stable")
        bounds = np.searchsorted(found_piece[order], np.arange(chunks + 1))
        for k in np.flatnonzero((cost > 0) | (bounds[1:] > bounds[:-1])).tolist():
            found_keys.append(keys[order[bounds[k] : bounds[k + 1]]])
            costs.append(int(cost[k]))
    return found_keys, costs


__all__ = [
    "Session",
    "build_context",
    "campaign_events",
    "read_rows_file",
    "read_targets_file",
    "run_next",
    "run_sim",
    "run_start",
    "run_status",
    "sim_scan_step",
    "status_rows",
]
