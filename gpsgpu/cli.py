"""The ``gpsgpu`` command line: parse flags, build a config, call one pipeline function.

Errors the user can act on (:class:`gpsgpu.errors.GpsgpuError`) are printed as one line on stderr
with a non-zero exit code; anything else is reported as an internal error in one line too, with the
traceback only under ``--debug``. Logs and progress go to stderr so stdout stays clean for pipes.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from gpsgpu import __version__
from gpsgpu.errors import GpsgpuError

log = logging.getLogger("gpsgpu")

app = typer.Typer(
    name="gpsgpu",
    help="Predict Internet services across all 65,536 ports (GPS) on GPUs and CPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_state = {"debug": False}

BackendOpt = Annotated[
    str | None,
    typer.Option("--backend", help="auto|cpu|gpu (auto: the GPU when cuDF and a device are present)"),
]
DefaultPortOpt = Annotated[
    int | None,
    typer.Option("--default-port", help="port for records that carry none (ZGrab2 -p, ZMap single-port CSV)"),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-C", help="TOML file with one table per command, e.g. [ingest]")
]

# What the demo writes into its folder (gpsgpu/pipelines/demo.py); a rerun may replace these.
DEMO_ENTRIES = (
    "net", "model", "model-improved", "campaign", "campaign-improved", "eval", "metadata.json",
    # what demos before campaigns wrote
    "plan", "priors.parquet", "priors.metadata.json", "pred",
)  # fmt: skip

ForceOpt = Annotated[
    bool, typer.Option("--force", help="replace an existing -o path even if gpsgpu did not write it")
]


def _claim_output(
    output: object,
    *inputs: object,
    force: bool,
    folder: bool = True,
    sidecars: bool = False,
    folder_entries: tuple[str, ...] = (),
) -> None:
    """Check ``-o`` before any work (see gpsgpu.io.outputs): never an input, never someone else's data."""
    from gpsgpu.io.metadata import metadata_path_for
    from gpsgpu.io.outputs import check_output
    from gpsgpu.io.rejects import rejects_path_for

    flat: list[str] = []
    for given in inputs:
        if given is None:
            continue
        if isinstance(given, list | tuple):
            flat.extend(str(g) for g in given if g is not None)
        else:
            flat.append(str(given))
    path = Path(str(output))
    derived = [metadata_path_for(path), rejects_path_for(path)] if sidecars else []
    check_output(
        str(output), inputs=flat, derived=derived, force=force, folder=folder, folder_entries=folder_entries
    )


def _setup_logging(verbosity: int, log_file: Path | None) -> None:
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    handlers: list[logging.Handler] = []
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("gpsgpu: %(message)s"))
    # Libraries that set their own loggers' levels (Dask's are INFO) still pass through this one.
    stderr.setLevel(level)
    handlers.append(stderr)
    if log_file is not None:
        try:
            to_file = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            from gpsgpu.errors import UsageError

            raise UsageError(f"--log-file {log_file}: cannot write the log ({exc.strerror})") from None
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(to_file)
    if verbosity <= 0:
        stderr.addFilter(_quiet_cluster)
    logging.basicConfig(level=level, handlers=handlers, force=True)


def _quiet_cluster(record: logging.LogRecord) -> bool:
    """A cluster's start-up and shutdown chatter (Dask's nannies, workers, connections: INFO records
    of loggers whose levels Dask sets itself) reaches stderr only with -v; its warnings always do."""
    return record.levelno >= logging.WARNING or not record.name.startswith(("distributed", "dask"))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpsgpu {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="more detail on stderr")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="only warnings and errors on stderr")] = False,
    log_file: Annotated[Path | None, typer.Option("--log-file", "-l", help="also write the log here")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks of internal errors")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    _state["debug"] = debug
    _setup_logging(-1 if quiet else verbose, log_file)


@app.command()
def ingest(
    inputs: Annotated[
        list[str], typer.Argument(help="scan files (plain, .gz, .zst, .bz2 or .xz); '-' reads standard input")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="services table to write (Parquet)")],
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help="auto|gps|lzr|zgrab2|zmap|censys|services")
    ] = None,
    asn_file: Annotated[
        str | None,
        typer.Option("--asn-file", help="prefix<TAB>asn file (pyasn format) for records that carry no ASN"),
    ] = None,
    max_reject_rate: Annotated[
        float | None, typer.Option("--max-reject-rate", help="fail when more than this share is rejected")
    ] = None,
    max_banner_bytes: Annotated[
        int | None, typer.Option("--max-banner-bytes", help="reject banners longer than this (UTF-8 bytes)")
    ] = None,
    default_port: DefaultPortOpt = None,
    backend: BackendOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
) -> None:
    """Read scan records (GPS schema, LZR, ZGrab2, ZMap, Censys) into a services table."""
    from gpsgpu.config import IngestConfig, load_config
    from gpsgpu.pipelines.ingest import run_ingest

    cfg = load_config(
        IngestConfig,
        "ingest",
        file=config,
        flags={
            "format": fmt,
            "backend": backend,
            "asn_file": asn_file,
            "max_reject_rate": max_reject_rate,
            "max_banner_bytes": max_banner_bytes,
            "default_port": default_port,
        },
    )
    _claim_output(output, inputs, cfg.asn_file, config, force=force, folder=False, sidecars=True)
    run_ingest(inputs, output, cfg)


@app.command()
def stats(
    table: Annotated[Path, typer.Argument(help="a services table written by 'gpsgpu ingest'")],
    top: Annotated[int, typer.Option("--top", help="how many ports and protocols to list")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON on stdout instead of a table")] = False,
) -> None:
    """Summarize a services table: hosts, services, ports per host, top ports and protocols."""
    from gpsgpu.pipelines.ingest import run_stats

    run_stats(table, top=top, as_json=as_json)


@app.command()
def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="folder for everything the demo writes")
    ] = Path("gpsgpu-demo"),
    hosts: Annotated[
        str | None, typer.Option("--hosts", help="responsive hosts of the simulated Internet (150000)")
    ] = None,
    seed_fraction: Annotated[
        float | None, typer.Option("--seed-fraction", help="share of addresses in the seed scan (0.02)")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="random seed of the simulation (0)")] = None,
    no_xgboost: Annotated[
        bool, typer.Option("--no-xgboost", help="skip the XGBoost scanner baseline (faster)")
    ] = False,
    backend: BackendOpt = None,
    force: ForceOpt = False,
) -> None:
    """Run the whole GPS loop on a small simulated Internet and print what it found."""
    from gpsgpu.config import DemoConfig, load_config
    from gpsgpu.pipelines.demo import run_demo

    cfg = load_config(
        DemoConfig,
        "demo",
        flags={
            "hosts": _parse_hosts(hosts),
            "seed_fraction": seed_fraction,
            "seed": seed,
            "xgboost": False if no_xgboost else None,
            "backend": backend,
        },
    )
    _claim_output(output, force=force, folder_entries=DEMO_ENTRIES)
    run_demo(output, backend=cfg.backend, config=cfg)


@app.command()
def serve(
    dist: Annotated[
        list[str] | None,
        typer.Option("--dist", help="a distances folder (gpsgpu portdist build); repeat for more"),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="a model folder (gpsgpu learn)")] = None,
    plan: Annotated[str | None, typer.Option("--plan", help="a plan folder (gpsgpu plan)")] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="address to listen on (127.0.0.1; 0.0.0.0 in docker)")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="TCP port to listen on (8080)")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="uvicorn worker processes (1)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve a read-only REST API (/api/v1, docs at /docs) and a web page over the stores."""
    from gpsgpu.config import ServeConfig, load_config
    from gpsgpu.pipelines.serve import run_serve

    cfg = load_config(
        ServeConfig,
        "serve",
        file=config,
        flags={
            "dist": tuple(dist) if dist else None,
            "model": model,
            "plan": plan,
            "host": host,
            "port": port,
            "workers": workers,
        },
    )
    run_serve(cfg)


# --- simulation commands (simulate, evaluate; demo above) are added below this line ---


def _parse_hosts(value: str | None) -> float | None:
    """``--hosts`` accepts ``1000000``, ``1e6`` or ``1_000_000``; anything else is a usage error."""
    if value is None:
        return None
    from gpsgpu.errors import UsageError

    try:
        return float(value.replace("_", ""))
    except ValueError:
        raise UsageError(f"--hosts must be a number such as 1000000 or 1e6, not {value!r}") from None


@app.command()
def simulate(
    output: Annotated[Path, typer.Option("--output", "-o", help="folder to write (NET/)")],
    hosts: Annotated[
        str | None, typer.Option("--hosts", help="responsive hosts to simulate, e.g. 1e6 (default 1,000,000)")
    ] = None,
    seed_fraction: Annotated[
        float | None,
        typer.Option("--seed-fraction", help="share of addresses the seed scan covers on all ports (0.01)"),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="random seed of the simulation (0)")] = None,
    day: Annotated[
        int | None, typer.Option("--day", help="day of the snapshot; churn moves hosts (0)")
    ] = None,
    export: Annotated[
        str | None, typer.Option("--export", help="also write the seed scan as GPS-schema JSON Lines: gps")
    ] = None,
    truth: Annotated[
        str | None,
        typer.Option("--truth", help="write truth.parquet: auto (when at most 5M services), always, never"),
    ] = None,
    port_spread: Annotated[
        str | None,
        typer.Option(
            "--port-spread",
            help="spread of services over the ports: 1..100, default (1) or talk (closest to the GPS talk)",
        ),
    ] = None,
    backend: BackendOpt = None,
    cluster: ClusterOpt = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
) -> None:
    """Simulate an Internet: seed scan, ground truth (or its parameters), statistics beside the GPS talk."""
    from gpsgpu.config import SimulateConfig, load_config
    from gpsgpu.pipelines.simulate import run_simulate

    cfg = load_config(
        SimulateConfig,
        "simulate",
        file=config,
        flags={
            "hosts": _parse_hosts(hosts),
            "seed_fraction": seed_fraction,
            "seed": seed,
            "day": day,
            "export": export,
            "truth": truth,
            "port_spread": port_spread,
            "backend": backend,
            "cluster": cluster,
            "workers": workers,
        },
    )
    _claim_output(output, config, force=force)
    run_simulate(output, cfg)


@app.command("sim-scan")
def sim_scan(
    net: Annotated[Path, typer.Argument(help="a simulated Internet (NET/ from 'gpsgpu simulate')")],
    plan_dir: Annotated[
        Path, typer.Argument(help="a plan (PLAN/ from 'gpsgpu plan') or predictions (PRED/) to probe")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="services found, to write (Parquet)")],
    backend: BackendOpt = None,
    cluster: ClusterOpt = None,
    workers: WorkersOpt = None,
    force: ForceOpt = False,
) -> None:
    """Scan a plan's (port, prefix) rows, or probe a PRED/ folder's targets, on a simulated Internet."""
    from gpsgpu.errors import UsageError
    from gpsgpu.pipelines.simulate import run_sim_scan

    if workers is not None and workers < 0:
        raise UsageError(f"--workers must be 0 (every core or GPU) or more, not {workers}")
    _claim_output(output, net, plan_dir, force=force, folder=False, sidecars=True)
    run_sim_scan(
        net, plan_dir, output, backend=backend or "auto", cluster=cluster or "none", workers=workers or 0
    )


@app.command()
def evaluate(
    predictions: Annotated[
        Path | None, typer.Argument(help="predictions (PRED/ from 'gpsgpu predict'); none with --ablation")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="the simulated Internet (NET/ from 'gpsgpu simulate')")
    ] = None,
    plan_dir: Annotated[
        Path | None,
        typer.Option("--plan", help="the plan the priors scan ran (default: recorded by predict)"),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="folder for the table, CSVs and plots")
    ] = Path("eval"),
    baselines: Annotated[
        str | None, typer.Option("--baselines", help="comma list: port-order, xgboost, none")
    ] = None,
    include_pseudo: Annotated[
        bool, typer.Option("--include-pseudo", help="count services of hosts on more than 10 ports")
    ] = False,
    xgb_ports: Annotated[
        int | None, typer.Option("--xgb-ports", help="the XGBoost scanner runs on this many top ports (10)")
    ] = None,
    xgb_sample: Annotated[
        int | None, typer.Option("--xgb-sample", help="addresses the XGBoost scanner is applied to (400000)")
    ] = None,
    ablation: Annotated[
        bool, typer.Option("--ablation", help="compatible vs improved mode step by step on --truth NET/")
    ] = False,
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="ablation: predictors per seed service (4)")
    ] = None,
    rounds: Annotated[
        int | None, typer.Option("--rounds", help="ablation: rounds of the last step (3)")
    ] = None,
    backend: BackendOpt = None,
    cluster: ClusterOpt = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
) -> None:
    """Score a GPS run against a simulated ground truth, with baselines; table, CSV and PNG plots."""
    from gpsgpu.config import EvaluateConfig, load_config
    from gpsgpu.pipelines.evaluate import run_evaluate

    cfg = load_config(
        EvaluateConfig,
        "evaluate",
        file=config,
        flags={
            "truth": str(truth) if truth is not None else None,
            "plan": str(plan_dir) if plan_dir is not None else None,
            "baselines": tuple(b.strip() for b in baselines.split(",") if b.strip()) if baselines else None,
            "include_pseudo": include_pseudo or None,
            "xgb_ports": xgb_ports,
            "xgb_sample": xgb_sample,
            "backend": backend,
            "cluster": cluster,
            "workers": workers,
            "ablation": ablation or None,
            "top_k": top_k,
            "rounds": rounds,
        },
    )
    _claim_output(output, predictions, cfg.truth, cfg.plan, config, force=force)
    ablation_only = [flag for flag, value in (("--top-k", top_k), ("--rounds", rounds)) if value is not None]
    if ablation_only and not cfg.ablation:
        from gpsgpu.errors import UsageError

        raise UsageError(f"{', '.join(ablation_only)}: only with --ablation")
    if cfg.ablation:
        from gpsgpu.pipelines.evaluate import run_ablation_command

        run_ablation_command(output, cfg)
        return
    if predictions is None:
        from gpsgpu.errors import UsageError

        raise UsageError("give the predictions to evaluate (PRED/), or --ablation to compare the modes")
    run_evaluate(predictions, output, cfg)


# --- engine commands (learn, plan, predict) are added below this line ---

HitrateOpt = Annotated[
    float | None, typer.Option("--hitrate", help="keep what beats this hitrate (reference default 0.00001)")
]
StepOpt = Annotated[
    int | None, typer.Option("--step", help="prefix length of a plan row (reference default 16)")
]
BlocklistOpt = Annotated[
    list[str] | None,
    typer.Option("--blocklist", "-b", help="ZMap blocklist file, added to the IANA ranges (repeatable)"),
]


ClusterOpt = Annotated[
    str | None,
    typer.Option("--cluster", help="none|local|local-cuda|tcp://host:port: run partitions on a Dask cluster"),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="workers of a local cluster (0: every core or GPU)")
]
ModeOpt = Annotated[
    str | None,
    typer.Option(
        "--mode",
        help="compatible (GPS exactly, the default) or improved (scored top-k rules, extended features)",
    ),
]
BudgetOpt = Annotated[
    int | None, typer.Option("--budget", help="probes: keep the best rows/predictions within this many")
]


@app.command()
def learn(
    seed: Annotated[list[str], typer.Argument(help="seed scan: services table or scan records ('-': stdin)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="model folder to write (MODEL/)")],
    hitrate: HitrateOpt = None,
    step: StepOpt = None,
    preset: Annotated[
        str | None, typer.Option("--preset", help="feature preset: gps2022 (compatible mode) or extended")
    ] = None,
    no_asn: Annotated[bool, typer.Option("--no-asn", help="learn without ASN features (UseASN off)")] = False,
    partitions: Annotated[
        int | None, typer.Option("--partitions", help="count hosts in this many partitions (same result)")
    ] = None,
    chunk_pairs: Annotated[
        int | None, typer.Option("--chunk-pairs", help="expand at most this many pairs at once (memory)")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads counting pairs (0: every core)")
    ] = None,
    save_counts: Annotated[
        bool, typer.Option("--save-counts", help="also write the additive count tables into MODEL/")
    ] = False,
    mode: ModeOpt = None,
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="improved: predictors kept per seed service (4)")
    ] = None,
    min_count: Annotated[
        int | None, typer.Option("--min-count", help="improved: seed hosts a rule needs (2; GPS: 3)")
    ] = None,
    max_host_ports: Annotated[
        int | None,
        typer.Option("--max-host-ports", help="improved: largest real host learned from (32; GPS: 10)"),
    ] = None,
    seed_fraction: Annotated[
        float | None,
        typer.Option("--seed-fraction", help="improved: share of addresses the seed covers (0.01)"),
    ] = None,
    no_host_rules: Annotated[
        bool, typer.Option("--no-host-rules", help="improved: no host rules (what a live host of an AS runs)")
    ] = False,
    default_port: DefaultPortOpt = None,
    backend: BackendOpt = None,
    cluster: ClusterOpt = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
) -> None:
    """Phase 1a: learn predictive patterns and rules from a seed scan (compatible or improved mode)."""
    from gpsgpu.config import LearnConfig, load_config
    from gpsgpu.pipelines.learn import run_learn

    cfg = load_config(
        LearnConfig,
        "learn",
        file=config,
        flags={
            "hitrate": hitrate,
            "step": step,
            "use_asn": False if no_asn else None,
            "partitions": partitions,
            "chunk_pairs": chunk_pairs,
            "threads": threads,
            "save_counts": True if save_counts else None,
            "backend": backend,
            "cluster": cluster,
            "workers": workers,
            "mode": mode,
            "preset": preset,
            "top_k": top_k,
            "min_count": min_count,
            "max_host_ports": max_host_ports,
            "seed_fraction": seed_fraction,
            "host_rules": False if no_host_rules else None,
            "default_port": default_port,
        },
    )
    improved_only = {
        "--top-k": top_k,
        "--min-count": min_count,
        "--max-host-ports": max_host_ports,
        "--seed-fraction": seed_fraction,
        "--no-host-rules": no_host_rules or None,
    }
    given = [flag for flag, value in improved_only.items() if value is not None]
    if given and cfg.mode != "improved":
        from gpsgpu.errors import UsageError

        raise UsageError(f"{', '.join(given)}: only for --mode improved (this run is compatible mode)")
    _claim_output(output, seed, config, force=force)
    run_learn(seed, output, cfg)


@app.command()
def plan(
    model: Annotated[Path, typer.Argument(help="model folder written by 'gpsgpu learn'")],
    output: Annotated[Path, typer.Option("--output", "-o", help="plan folder to write (PLAN/)")],
    step: StepOpt = None,
    hitrate: HitrateOpt = None,
    blocklist: BlocklistOpt = None,
    rate: Annotated[
        int | None, typer.Option("--rate", "-r", help="zmap -r (packets/s) for commands.sh")
    ] = None,
    zmap: Annotated[str | None, typer.Option("--zmap", help="zmap executable named in commands.sh")] = None,
    budget: BudgetOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
) -> None:
    """Phase 1b: the (port, prefix) priors scan plan, its probe count and ZMap allowlists."""
    from gpsgpu.config import PlanConfig, load_config
    from gpsgpu.pipelines.plan import run_plan

    cfg = load_config(
        PlanConfig,
        "plan",
        file=config,
        flags={
            "step": step,
            "hitrate": hitrate,
            "blocklist": tuple(blocklist) if blocklist else None,
            "rate": rate,
            "zmap": zmap,
            "budget": budget,
        },
    )
    _claim_output(output, model, cfg.blocklist, config, force=force)
    run_plan(model, output, cfg)


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="model folder written by 'gpsgpu learn'")],
    priors: Annotated[list[str], typer.Argument(help="priors scan results: services table or scan records")],
    output: Annotated[Path, typer.Option("--output", "-o", help="predictions folder to write (PRED/)")],
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help="auto|gps|lzr|zgrab2|zmap|censys|services")
    ] = None,
    export: Annotated[
        str | None, typer.Option("--export", help="also write PRED/predictions.txt: gps (ip:port)|lzr|zgrab2")
    ] = None,
    plan_dir: Annotated[
        str | None, typer.Option("--plan", help="PLAN/ folder whose step and hitrate to use")
    ] = None,
    step: StepOpt = None,
    hitrate: HitrateOpt = None,
    blocklist: BlocklistOpt = None,
    priors_per_partition: Annotated[
        int | None,
        typer.Option(
            "--priors-per-partition",
            help="priors services predicted at once (default 1000000; improved models 262144)",
        ),
    ] = None,
    budget: BudgetOpt = None,
    min_score: Annotated[
        float | None,
        typer.Option(
            "--min-score",
            help="improved: keep the predictions scoring at least this (0..1); the others are not written",
        ),
    ] = None,
    combine: Annotated[
        str | None,
        typer.Option("--combine", help="improved: rules predicting one ip:port combine by noisy-or|max"),
    ] = None,
    default_port: DefaultPortOpt = None,
    backend: BackendOpt = None,
    cluster: ClusterOpt = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
) -> None:
    """Phase 2: predict services from the priors scan, minus plan, seed and blocklisted space."""
    from gpsgpu.config import PredictConfig, load_config
    from gpsgpu.pipelines.predict import run_predict

    cfg = load_config(
        PredictConfig,
        "predict",
        file=config,
        flags={
            "format": fmt,
            "export": export,
            "plan": plan_dir,
            "step": step,
            "hitrate": hitrate,
            "blocklist": tuple(blocklist) if blocklist else None,
            "priors_per_partition": priors_per_partition,
            "backend": backend,
            "cluster": cluster,
            "workers": workers,
            "budget": budget,
            "min_score": min_score,
            "combine": combine,
            "default_port": default_port,
        },
    )
    _claim_output(output, model, priors, cfg.plan, cfg.blocklist, config, force=force)
    run_predict(model, priors, output, cfg)


# --- port2dist commands: a `portdist` typer sub-app is added below this line ---

portdist_app = typer.Typer(
    name="portdist",
    help="port2dist: semantic port distances learned from darknet scans (build, query, block, peers).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(portdist_app, name="portdist")

# What a distances folder holds (gpsgpu/io/portdist.py): a build interrupted before its first
# metadata.json still leaves only these, and a rerun may complete it.
DIST_ENTRIES = ("daily", "darknet", "model", "metadata.json")

DistOpt = Annotated[Path, typer.Argument(help="a distances folder written by 'gpsgpu portdist build'")]
SourceOpt = Annotated[
    str | None, typer.Option("--source", help="darknet (default) or model (GPS co-location, --from-model)")
]
WindowOpt = Annotated[
    str | None, typer.Option("--window", "-w", help="day|week|month|year (default: the longest built)")
]


@portdist_app.command("ingest")
def portdist_ingest(
    inputs: Annotated[
        list[str], typer.Argument(help="pcap/pcapng captures or CSV/Parquet flow records; '-' is stdin")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="probes table to write (Parquet)")],
    max_reject_rate: Annotated[
        float | None, typer.Option("--max-reject-rate", help="fail when more than this share is rejected")
    ] = None,
    allow_truncated: Annotated[
        bool | None,
        typer.Option(
            "--allow-truncated/--no-allow-truncated", help="keep the packets of a capture cut short"
        ),
    ] = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
) -> None:
    """Read TCP SYN probes (SYN without ACK, IPv4) from captures or flow records."""
    from gpsgpu.config import PortdistIngestConfig, load_config
    from gpsgpu.pipelines.portdist import run_portdist_ingest

    cfg = load_config(
        PortdistIngestConfig,
        "portdist_ingest",
        file=config,
        flags={"max_reject_rate": max_reject_rate, "allow_truncated": allow_truncated},
    )
    _claim_output(output, inputs, config, force=force, folder=False, sidecars=True)
    run_portdist_ingest(inputs, output, cfg)


@portdist_app.command("simulate")
def portdist_simulate(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="folder to write (probes/, campaigns.parquet, ...)")
    ],
    probes_per_day: Annotated[
        int | None, typer.Option("--probes-per-day", help="TCP SYNs per day (50,000,000 at full size)")
    ] = None,
    days: Annotated[int | None, typer.Option("--days", help="number of days (1..366)")] = None,
    start: Annotated[str | None, typer.Option("--start", help="first day, YYYY-MM-DD")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="random seed")] = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
) -> None:
    """Simulate a /20 darknet: labelled scanner campaigns, vertical/horizontal scans and noise."""
    from gpsgpu.config import PortdistSimulateConfig, load_config
    from gpsgpu.pipelines.portdist import run_portdist_simulate

    cfg = load_config(
        PortdistSimulateConfig,
        "portdist_simulate",
        file=config,
        flags={"probes_per_day": probes_per_day, "days": days, "start": start, "seed": seed},
    )
    _claim_output(output, config, force=force)
    run_portdist_simulate(output, cfg)


@portdist_app.command("build")
def portdist_build(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="probes (Parquet file/folder, or captures/flow records); none: rebuild windows"),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="distances folder (created or updated)")
    ] = Path("dist"),
    window: Annotated[
        list[str] | None,
        typer.Option("--window", "-w", help="day|week|month|year (repeatable; default week)"),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="last day of the windows (default: latest)")
    ] = None,
    from_model: Annotated[
        str | None,
        typer.Option("--from-model", help="also build co-location distances from a GPS model folder"),
    ] = None,
    vertical_min_ports: Annotated[
        int | None,
        typer.Option("--vertical-min-ports", help="a day's sequence with this many ports is a vertical scan"),
    ] = None,
    horizontal_max_ports: Annotated[
        int | None, typer.Option("--horizontal-max-ports", help="at most this many ports ...")
    ] = None,
    horizontal_min_dsts: Annotated[
        int | None,
        typer.Option("--horizontal-min-dsts", help="... on at least this many addresses: horizontal"),
    ] = None,
    min_sources: Annotated[
        int | None,
        typer.Option(
            "--min-sources",
            help="an edge needs this many source-days (darknet) or shared hosts (--from-model)",
        ),
    ] = None,
    colocation_prior: Annotated[
        float | None,
        typer.Option(
            "--colocation-prior",
            help="--from-model: pseudo-hosts shrinking P(a|b) of rarely seen ports toward 0 (10)",
        ),
    ] = None,
    rescale: Annotated[
        str | None, typer.Option("--rescale", help="assoc|log|linear (weights -> (0, 1])")
    ] = None,
    store_k: Annotated[int | None, typer.Option("--store-k", help="neighbours stored per port")] = None,
    apsp: Annotated[str | None, typer.Option("--apsp", help="auto|scipy|minplus|gpu")] = None,
    backend: BackendOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
) -> None:
    """Count transitions per day and compute distances for the windows."""
    from gpsgpu.config import PortdistBuildConfig, load_config
    from gpsgpu.pipelines.portdist import run_portdist_build

    cfg = load_config(
        PortdistBuildConfig,
        "portdist_build",
        file=config,
        flags={
            "windows": tuple(window) if window else None,
            "end": end,
            "from_model": from_model,
            "vertical_min_ports": vertical_min_ports,
            "horizontal_max_ports": horizontal_max_ports,
            "horizontal_min_dsts": horizontal_min_dsts,
            "min_sources": min_sources,
            "colocation_prior": colocation_prior,
            "rescale": rescale,
            "store_k": store_k,
            "apsp": apsp,
            "backend": backend,
        },
    )
    _claim_output(output, inputs, cfg.from_model, config, force=force, folder_entries=DIST_ENTRIES)
    run_portdist_build(inputs or [], output, cfg)


@portdist_app.command("neighbors")
def portdist_neighbors(
    dist: DistOpt,
    port: Annotated[int, typer.Argument(help="a TCP port")],
    k: Annotated[int, typer.Option("-k", help="how many nearest ports")] = 10,
    source: SourceOpt = None,
    window: WindowOpt = None,
) -> None:
    """A port's k nearest ports (JSON on stdout)."""
    from gpsgpu.pipelines.portdist import run_portdist_neighbors

    run_portdist_neighbors(dist, port, k=k, source=source, window=window)


@portdist_app.command("distance")
def portdist_distance(
    dist: DistOpt,
    a: Annotated[int, typer.Argument(help="a TCP port")],
    b: Annotated[int, typer.Argument(help="another TCP port")],
    source: SourceOpt = None,
    window: WindowOpt = None,
) -> None:
    """The distance between two ports (JSON on stdout; null when unobserved or unreachable)."""
    from gpsgpu.pipelines.portdist import run_portdist_distance

    run_portdist_distance(dist, a, b, source=source, window=window)


@portdist_app.command("export")
def portdist_export(
    dist: DistOpt,
    output: Annotated[
        str, typer.Option("--output", "-o", help="CSV or Parquet file; '-' is CSV on stdout")
    ] = "-",
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help="csv|parquet (default: by extension)")
    ] = None,
    k: Annotated[
        int | None, typer.Option("-k", help="only each port's k nearest (default: every pair)")
    ] = None,
    source: SourceOpt = None,
    window: WindowOpt = None,
    force: ForceOpt = False,
) -> None:
    """Write a whole window's distances (a, b, distance)."""
    from gpsgpu.pipelines.portdist import run_portdist_export

    _claim_output(output, dist, force=force, folder=False, sidecars=True)
    run_portdist_export(dist, output, source=source, window=window, k=k, fmt=fmt)


@portdist_app.command("block")
def portdist_block(
    probes: Annotated[str, typer.Argument(help="probes Parquet (file, folder, or a simulate folder)")],
    dist: Annotated[Path, typer.Option("--dist", help="distances folder")],
    k: Annotated[int | None, typer.Option("-k", help="ports predicted and blocked per source")] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="also write the report (.csv or .json)")
    ] = None,
    source: SourceOpt = None,
    window: WindowOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
) -> None:
    """Replay probes in time order, blocking each source's k nearest ports; TP/FP per campaign."""
    from gpsgpu.config import PortdistBlockConfig, load_config
    from gpsgpu.pipelines.portdist import run_portdist_block

    cfg = load_config(
        PortdistBlockConfig,
        "portdist_block",
        file=config,
        flags={"k": k, "output": output, "source": source, "window": window},
    )
    if cfg.output:
        _claim_output(cfg.output, probes, dist, config, force=force, folder=False, sidecars=True)
    run_portdist_block(probes, dist, cfg)


@portdist_app.command("peers")
def portdist_peers(
    probes: Annotated[str, typer.Argument(help="a 'portdist simulate' folder (probes + ground truth)")],
    dist: Annotated[Path, typer.Option("--dist", help="distances folder built from the same probes")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="folder for the table, CSVs and plot")
    ] = Path("peers"),
    k: Annotated[int | None, typer.Option("-k", help="blocking k of the main table")] = None,
    quality_k: Annotated[
        int | None, typer.Option("--quality-k", help="k of the neighbour-quality score")
    ] = None,
    window: WindowOpt = None,
    replay_days: Annotated[
        int | None,
        typer.Option(
            "--replay-days",
            help="held-out days after the window to replay (0: all; none after it: its own last days)",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Word2Vec seed")] = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
) -> None:
    """Compare port2dist with numeric distance, IANA ranges and Word2Vec (table + plot)."""
    from gpsgpu.config import PortdistPeersConfig, load_config
    from gpsgpu.pipelines.portdist import run_portdist_peers

    cfg = load_config(
        PortdistPeersConfig,
        "portdist_peers",
        file=config,
        flags={"k": k, "quality_k": quality_k, "window": window, "replay_days": replay_days, "seed": seed},
    )
    _claim_output(output, probes, dist, config, force=force)
    run_portdist_peers(probes, dist, output, cfg)


from gpsgpu.cli_campaign import campaign_app  # noqa: E402  (the campaign sub-app)

app.add_typer(campaign_app, name="campaign")


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """Click's usage errors, from typer's vendored click (typer >= 0.29) and from click itself."""
    import importlib

    found: list[type[BaseException]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _usage_error_line(exc: BaseException) -> str:
    """One line for a usage error: what is wrong and where the command's help is."""
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = " ".join(str(message).split())
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None and getattr(ctx, "command_path", None) else "gpsgpu"
    return f"gpsgpu: usage error: {message} (see '{where} --help')"


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary outputs are removed on the way out."""
    raise KeyboardInterrupt


#: glibc's malloc settings for the engine (mallopt parameter, environment variable, value): heap
#: tops above 2 MiB go back to the system when freed, and arrays of 32 MiB or more are mapped apart.
_MALLOC_SETTINGS = (
    (-1, "MALLOC_TRIM_THRESHOLD_", 2 << 20),  # M_TRIM_THRESHOLD
    (-3, "MALLOC_MMAP_THRESHOLD_", 32 << 20),  # M_MMAP_THRESHOLD
)


def _tune_malloc() -> None:
    """Fixed glibc malloc thresholds, in this process and in the processes it starts (Dask workers
    read the environment when they start); a setting the user made is kept.

    By default glibc raises its trim threshold with every large block freed (to 64 MiB), and
    ``malloc_trim`` does not trim the top of a thread's arena: the freed temporaries of one stage
    stay resident through the next and add to its peak (bench/RESULTS.md, 2026-12-06). Fixing the
    thresholds turns that growth off; 32 MiB is where the default mapping threshold ends up anyway.
    """
    import ctypes
    import os

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    for parameter, variable, value in _MALLOC_SETTINGS:
        if variable in os.environ:
            continue
        os.environ[variable] = str(value)
        mallopt(parameter, value)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning every outcome into an honest exit status.

    0 success, 1 a failed run, 2 usage, 3 bad input, 130 interrupted, 70 an internal error (a bug:
    one line, the traceback under ``--debug``).
    """
    import signal

    with contextlib.suppress(ValueError):  # not the main thread (embedded use): keep the default
        signal.signal(signal.SIGTERM, _terminated)
    _tune_malloc()  # before the first worker thread or process starts
    click_errors = _click_exception_types()
    try:
        status = app(args=argv, standalone_mode=False)
    except GpsgpuError as exc:
        typer.echo(f"gpsgpu: error: {_one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", None)
        sys.exit(code if code is not None else getattr(exc, "code", 0))
    except KeyboardInterrupt:
        typer.echo("gpsgpu: interrupted", err=True)
        sys.exit(130)
    except click_errors as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare 'gpsgpu' or 'gpsgpu portdist': the help
            typer.echo(exc.format_message(), err=True)  # type: ignore[attr-defined]
            sys.exit(2)
        typer.echo(_usage_error_line(exc), err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except OSError as exc:  # a disk, permission or path problem the user can fix: one line
        if _state["debug"]:
            raise
        typer.echo(f"gpsgpu: error: {_os_error_line(exc)}", err=True)
        sys.exit(1)
    except Exception as exc:  # the user never sees a traceback unless they ask for one
        if type(exc).__name__ == "Abort":  # click's Abort: EOF on a prompt
            typer.echo("gpsgpu: aborted", err=True)
            sys.exit(130)
        if _state["debug"]:
            raise
        typer.echo(
            f"gpsgpu: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
            "(rerun with --debug for the traceback)",
            err=True,
        )
        sys.exit(70)
    if status == 130:  # typer turns Ctrl-C into Exit(130) and returns it when not standalone
        typer.echo("gpsgpu: interrupted", err=True)
    if isinstance(status, int) and status != 0:
        sys.exit(status)


def _os_error_line(exc: OSError) -> str:
    """``[Errno 28] ...: '/out/.x.123.abc.tmp'`` -> ``cannot write /out/x: No space left on device``."""
    from gpsgpu.io.atomic import target_of_temp

    reason = exc.strerror or type(exc).__name__
    name = exc.filename
    if name is None:
        return _one_line(f"{reason} ({exc})")
    target = target_of_temp(str(name))
    if target is not None:  # our atomic temporary: name what the user asked for
        return _one_line(f"cannot write {target}: {reason}")
    return _one_line(f"{name}: {reason}")


def _one_line(text: str, limit: int = 500) -> str:
    """Collapse a message to one line of printable text (input bytes can carry escapes)."""
    flat = " ".join(text.split())
    flat = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


if __name__ == "__main__":
    main()
