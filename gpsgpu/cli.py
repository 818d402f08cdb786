"""The ``gpsgpu`` command line: parse flags, build a config, call one pipeline function.

Errors the user can act on (:class:`gpsgpu.errors.GpsgpuError`) are printed as one line on stderr
with a non-zero exit code; anything else is reported as an internal error in one line too, with the
traceback only under ``--debug``. Logs and progress go to stderr so stdout stays clean for pipes.
"""

from __future__ import annotations

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
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-C", help="TOML file with one table per command, e.g. [ingest]")
]


def _setup_logging(verbosity: int, log_file: Path | None) -> None:
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    handlers: list[logging.Handler] = []
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("gpsgpu: %(message)s"))
    handlers.append(stderr)
    if log_file is not None:
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(to_file)
    logging.basicConfig(level=level, handlers=handlers, force=True)


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
        list[str], typer.Argument(help="scan files (plain, .gz or .zst); '-' reads standard input")
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
    default_port: Annotated[
        int | None,
        typer.Option(
            "--default-port", help="port for records that carry none (ZGrab2 -p, ZMap single-port CSV)"
        ),
    ] = None,
    backend: BackendOpt = None,
    config: ConfigOpt = None,
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
    backend: BackendOpt = None,
) -> None:
    """Run the whole loop on built-in data and print what it found."""
    from gpsgpu.pipelines.demo import run_demo

    run_demo(output, backend=backend or "auto")


# --- simulation commands (simulate, evaluate; demo above) are added below this line ---


# --- engine commands (learn, plan, predict) are added below this line ---


def main() -> None:
    """Console entry point: run the app, turning every error into one line on stderr."""
    try:
        app(standalone_mode=False)
    except GpsgpuError as exc:
        typer.echo(f"gpsgpu: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("gpsgpu: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("gpsgpu: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # the user never sees a traceback unless they ask for one
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if _state["debug"]:
            raise
        typer.echo(
            f"gpsgpu: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            err=True,
        )
        sys.exit(70)


if __name__ == "__main__":
    main()
