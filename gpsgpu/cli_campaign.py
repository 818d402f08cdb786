"""``gpsgpu campaign``: the scan loop as one resumable folder that a user drives with any scanner."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

campaign_app = typer.Typer(
    name="campaign",
    help="Campaigns: plan, scan, predict, probe, again, as one resumable folder driven by any scanner.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

CampOpt = Annotated[Path, typer.Argument(help="a campaign folder (gpsgpu campaign start)")]


@campaign_app.command("start")
def campaign_start(
    model: Annotated[Path, typer.Argument(help="model folder written by 'gpsgpu learn'")],
    output: Annotated[Path, typer.Option("--output", "-o", help="campaign folder to create (CAMP/)")],
    schedule: Annotated[
        str,
        typer.Option(
            "--schedule",
            help="compatible (GPS's plan, then its predictions; needs a compatible model) or improved "
            "(parts, live /24s, rounds; needs a model learned with --mode improved)",
        ),
    ] = "improved",
    budget: Annotated[
        int | None, typer.Option("--budget", help="probes in all: the campaign stops when they are spent")
    ] = None,
    blocklist: Annotated[
        list[str] | None,
        typer.Option("--blocklist", "-b", help="ZMap blocklist file, added to the IANA ranges (repeatable)"),
    ] = None,
    step: Annotated[
        int | None, typer.Option("--step", help="prefix length of a plan row (default: the model's, 16)")
    ] = None,
    hitrate: Annotated[
        float | None, typer.Option("--hitrate", help="GPS's row filter (default: the model's, 0.00001)")
    ] = None,
    seed_fraction: Annotated[
        float | None,
        typer.Option(
            "--seed-fraction",
            help="share of addresses the seed scanned (expected services; default the model's or 0.01)",
        ),
    ] = None,
    rate: Annotated[
        int, typer.Option("--rate", "-r", help="zmap -r (packets/s) in the steps' commands.sh")
    ] = 10000,
    zmap: Annotated[str, typer.Option("--zmap", help="zmap executable named in commands.sh")] = "zmap",
    asn_file: Annotated[
        str | None,
        typer.Option(
            "--asn-file", help="prefix<TAB>asn file (pyasn format) for found records that carry no ASN"
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="replace an existing campaign (its steps are lost) or a folder gpsgpu did not write",
        ),
    ] = False,
) -> None:
    """Start a campaign: fix the model, schedule, budget and scope; write step 001 and print its folder."""
    from gpsgpu.campaign.schedule import Options
    from gpsgpu.cli import _claim_output
    from gpsgpu.config import _check_number
    from gpsgpu.errors import UsageError
    from gpsgpu.pipelines.campaign import run_start

    numbers = {
        "budget": budget,
        "step": step,
        "hitrate": hitrate,
        "seed_fraction": seed_fraction,
        "rate": rate,
    }
    for name, value in numbers.items():
        if value is not None:
            _check_number(name, value)
    if step is not None and not 8 <= step <= 32:
        raise UsageError(f"--step must be within 8..32, not {step}")
    if seed_fraction is not None and not 0 < seed_fraction <= 1:
        raise UsageError(f"--seed-fraction must be within (0, 1], not {seed_fraction}")
    if hitrate is not None and not 0 <= hitrate <= 1:
        raise UsageError(f"--hitrate must be within 0..1, not {hitrate}")
    if rate < 1:
        raise UsageError(f"--rate must be at least 1, not {rate}")
    if (output / "campaign.json").is_file() and not force:
        raise UsageError(
            f"-o {output}: a campaign already; go on with 'gpsgpu campaign next {output}', or add --force to "
            "start over (its steps are lost)"
        )
    _claim_output(output, model, *(blocklist or ()), asn_file, force=force)
    run_start(
        model, output, options=Options(schedule=schedule, budget=budget), blocklist=tuple(blocklist or ()),
        step=step, hitrate=hitrate, seed_fraction=seed_fraction, rate=rate, zmap=zmap, asn_file=asn_file,
    )  # fmt: skip


@campaign_app.command("next")
def campaign_next(
    campaign: CampOpt,
    more: Annotated[
        list[str] | None,
        typer.Argument(
            help="more found files (so that '--found results/*.csv' takes them all)", show_default=False
        ),
    ] = None,
    found: Annotated[
        list[str] | None,
        typer.Option(
            "--found", help="what the current step's scan found, any ingest format ('-': stdin; repeatable)"
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="auto|gps|lzr|zgrab2|zmap|censys|services")
    ] = "auto",
    max_reject_rate: Annotated[
        float | None,
        typer.Option("--max-reject-rate", help="fail when more of the records are rejects (0.01)"),
    ] = None,
) -> None:
    """Count what the current step found and write the next step; its folder is the last line printed."""
    from gpsgpu.config import IngestConfig, _check_number
    from gpsgpu.pipelines.campaign import run_next

    if max_reject_rate is not None:
        _check_number("max_reject_rate", max_reject_rate)
    IngestConfig(format=fmt, **({"max_reject_rate": max_reject_rate} if max_reject_rate is not None else {}))
    files = [*(found or ()), *(more or ())]
    if more and not found:
        from gpsgpu.errors import UsageError

        raise UsageError(
            f"{more[0]}: give found files after --found (gpsgpu campaign next CAMP --found FILE ...)"
        )
    run_next(campaign, files, fmt=fmt, max_reject_rate=max_reject_rate)


@campaign_app.command("status")
def campaign_status(
    campaign: CampOpt,
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="do not write CAMP/status.png")] = False,
) -> None:
    """Probes and services per step and in total, the expected coverage, and CAMP/status.png."""
    from gpsgpu.pipelines.campaign import run_status

    run_status(campaign, as_json=as_json, plot=not no_plot)


@campaign_app.command("run")
def campaign_run(
    campaign: CampOpt,
    sim: Annotated[
        Path, typer.Option("--sim", help="a simulated Internet (NET/ from 'gpsgpu simulate') to scan")
    ],
) -> None:
    """Run the campaign to its end on a simulated Internet (each step's files scanned as listed)."""
    from gpsgpu.pipelines.campaign import run_sim

    run_sim(campaign, sim)
