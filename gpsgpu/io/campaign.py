"""``CAMP/``: a campaign folder, its steps and its state on disk.

- ``campaign.json``: the model (path and fingerprint), the schedule's options, the plan's step and
  hitrate, the seed fraction, ZMap's rate; ``metadata.json``: gpsgpu's record of ``campaign start``;
  ``scope-blocklist.txt``: the IANA ranges plus the user's ``-b`` files, fixed at the start;
- ``asn.txt``: a copy of ``--asn-file`` (prefix, ASN), for scanner records that carry no ASN;
- ``log.jsonl``: one line per step, appended when the step is complete (rebuilt from the steps
  when a kill came between the two);
- ``steps/NNN/``: written whole and atomically, so the newest complete step folder is the campaign's
  state: ``step.json`` (kind ``rows``, ``targets`` or ``done``, probes, expected services, the
  schedule's reason, what the previous step's scan found); a rows step holds ``rows.csv`` (``port,cidr``:
  exactly the pairs to scan), ``zmap/<port>.txt``, ``blocklist.txt`` and ``commands.sh``; a targets
  step ``targets.txt`` (``ip:port``), ``targets.lzr.txt`` (``ip;port``) and ``targets.zgrab2.csv``
  (``ip,,,port``); ``found-by-MMM.parquet`` the services the previous step's scan found inside it;
  ``state/`` everything the schedule knows after deciding this step (removed from older steps).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gpsgpu import schema
from gpsgpu.blocklist import Blocklist
from gpsgpu.campaign.schedule import DONE, ROWS, TARGETS, Options, State, Step, cidr_sizes
from gpsgpu.errors import InputError
from gpsgpu.io.atomic import atomic_dir, atomic_open
from gpsgpu.io.parquet import read_table, write_table
from gpsgpu.io.plan import write_plan, write_rows
from gpsgpu.io.predictions import dotted, format_targets, text_lines

CAMPAIGN_FILE = "campaign.json"
LOG_FILE = "log.jsonl"
STEPS_DIR = "steps"
STATE_DIR = "state"
STEP_FILE = "step.json"
SCOPE_FILE = "scope-blocklist.txt"
#: The ``--asn-file`` given at the start (pyasn format), for found records that carry no ASN.
ASN_FILE = "asn.txt"
CAMPAIGN_FORMAT = 1
TARGET_FILES = {"gps": "targets.txt", "lzr": "targets.lzr.txt", "zgrab2": "targets.zgrab2.csv"}


@dataclass
class Campaign:
    """``campaign.json`` read back."""

    path: Path
    model: Path
    model_fingerprint: str
    options: Options
    step: int
    hitrate: float
    seed_fraction: float
    rate: int
    zmap: str


def model_fingerprint(model: str | os.PathLike[str]) -> str:
    """sha256 of ``MODEL/metadata.json``: a model learned again has another one."""
    try:
        return hashlib.sha256((Path(model) / "metadata.json").read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(f"{model}: cannot read its metadata.json ({exc.strerror})") from None


def write_campaign(directory: Path, campaign: Campaign, scope: Blocklist) -> None:
    document = {
        "tool": "gpsgpu",
        "format": CAMPAIGN_FORMAT,
        "model": str(campaign.model),
        "model_fingerprint": campaign.model_fingerprint,
        "options": campaign.options.to_dict(),
        "step": campaign.step,
        "hitrate": campaign.hitrate,
        "seed_fraction": campaign.seed_fraction,
        "rate": campaign.rate,
        "zmap": campaign.zmap,
    }
    with atomic_open(directory / CAMPAIGN_FILE, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    _write_blocklist(directory / SCOPE_FILE, scope, "the campaign's scope: IANA ranges plus -b files")


def _write_blocklist(path: Path, blocklist: Blocklist, what: str) -> None:
    with atomic_open(path, "w", encoding="ascii", newline="\n") as handle:
        handle.write(f"# gpsgpu: {what}\n")
        handle.writelines(f"{line}\n" for line in blocklist.to_lines())


def read_campaign(directory: str | os.PathLike[str]) -> tuple[Campaign, Blocklist]:
    """``campaign.json`` and the scope blocklist; a one-line error when it is not a campaign."""
    from gpsgpu.io.blocklist import read_blocklist

    directory = Path(directory)
    path = directory / CAMPAIGN_FILE
    if not path.is_file():
        raise InputError(
            f"{directory}: not a campaign folder (no {CAMPAIGN_FILE}); start one with "
            "'gpsgpu campaign start MODEL/ -o CAMP/'"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("tool") != "gpsgpu" or document.get("format") != CAMPAIGN_FORMAT:
            raise ValueError("not written by this gpsgpu")
        campaign = Campaign(
            path=directory,
            model=Path(document["model"]),
            model_fingerprint=str(document["model_fingerprint"]),
            options=Options.from_dict(document["options"]),
            step=int(document["step"]),
            hitrate=float(document["hitrate"]),
            seed_fraction=float(document["seed_fraction"]),
            rate=int(document["rate"]),
            zmap=str(document["zmap"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: not a campaign file of this gpsgpu ({exc})") from None
    return campaign, read_blocklist(directory / SCOPE_FILE, what=f"{directory}:")


def step_dirs(directory: str | os.PathLike[str]) -> list[Path]:
    """The complete step folders, in order (temporaries of an interrupted write are not listed)."""
    steps = Path(directory) / STEPS_DIR
    if not steps.is_dir():
        return []
    return sorted(p for p in steps.iterdir() if p.is_dir() and p.name.isdigit())


def step_dir(directory: str | os.PathLike[str], number: int) -> Path:
    return Path(directory) / STEPS_DIR / f"{number:03d}"


def found_name(number: int) -> str:
    return f"found-by-{number:03d}.parquet"


# --- writing a step -------------------------------------------------------------------------------


def write_step(
    campaign: Campaign,
    scope: Blocklist,
    step: Step,
    state: State,
    *,
    found: Any = None,
    previous: dict[str, Any] | None = None,
    skip: np.ndarray | None = None,
    root: Path | None = None,
) -> Path:
    """Write ``steps/NNN/`` whole and atomically (under ``root``, default the campaign's folder);
    append its line to the log; drop older states."""
    root = campaign.path if root is None else root
    target = step_dir(root, step.number)
    summary = {**step.summary(), "previous": previous or {}}
    with atomic_dir(target) as tmp:
        if step.kind == ROWS:
            _write_rows_step(campaign, scope, step, tmp, skip=skip)
        elif step.kind == TARGETS:
            _write_targets_step(step, tmp)
        if found is not None and previous:
            from gpsgpu.io.parquet import write_services

            write_services(found, tmp / found_name(step.number - 1))
        _write_state(state, tmp / STATE_DIR)
        with atomic_open(tmp / STEP_FILE, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
            handle.write("\n")
    append_log(root, summary)
    for older in step_dirs(root):
        if older != target and (older / STATE_DIR).exists():
            shutil.rmtree(older / STATE_DIR, ignore_errors=True)
    return target


def _write_rows_step(campaign: Campaign, scope: Blocklist, step: Step, tmp: Path, *, skip: Any) -> None:
    assert step.cidrs is not None and step.rows is not None
    cidrs = step.cidrs
    lengths = pc.cast(pa.array(cidrs["length"].to_numpy(np.uint8)), pa.string())
    text = pc.binary_join_element_wise(dotted(cidrs["network"].to_numpy(np.uint32)), lengths, "/")
    ports = cidrs["port"].to_numpy(np.uint16)
    if step.plan is not None and step.phase == "plan" and schema.N_PATTERNS in step.plan.columns:
        # The compatible plan step is a plan folder, as 'gpsgpu plan' writes it.
        from gpsgpu.plan.priors import ALLOWED, N_ALLOWED

        per_row: list[list[str]] = [[] for _ in range(len(step.rows))]
        for row, cidr in zip(cidrs["row"].tolist(), text.to_pylist(), strict=True):
            per_row[row].append(cidr)
        plan = step.rows.assign(**{ALLOWED: per_row})
        plan[N_ALLOWED] = np.bincount(
            cidrs["row"].to_numpy(np.int64),
            weights=cidr_sizes(cidrs),
            minlength=len(plan),
        ).astype(np.int64)
        write_plan(plan, tmp, step=campaign.step, blocklist=scope, rate=campaign.rate, zmap=campaign.zmap)
        _write_plan_metadata(campaign, step, tmp)
    else:
        _write_blocklist(
            tmp / "blocklist.txt",
            scope,
            "the campaign's scope (rows.csv and zmap/ already leave it out, and the hosts skipped)",
        )
        write_rows(
            tmp, ports, text, rate=campaign.rate, zmap=campaign.zmap,
            title=f"gpsgpu campaign step {step.number:03d}",
            then=f'then "gpsgpu campaign next {campaign.path} --found results/*.csv" '
            "(or the banners LZR/ZGrab2 grab there)",
        )  # fmt: skip
    write_table(pa.Table.from_pandas(step.rows, preserve_index=False), tmp / "rows.parquet")
    write_table(pa.Table.from_pandas(cidrs, preserve_index=False), tmp / "cidrs.parquet")


def _write_plan_metadata(campaign: Campaign, step: Step, tmp: Path) -> None:
    """The plan step's ``metadata.json``, so ``gpsgpu predict --plan`` and ``evaluate`` read it."""
    from gpsgpu.io.metadata import build_metadata, write_metadata

    metadata = build_metadata(
        command="plan",
        config={"campaign": str(campaign.path)},
        inputs={"model": str(campaign.model)},
        counts={"n_rows": len(step.rows), "probes_after_blocklist": int(step.probes)},
        extra={"params": {"step": campaign.step, "hitrate": campaign.hitrate, "mode": "compatible"}},
    )
    write_metadata(tmp / "metadata.json", metadata)


def _write_targets_step(step: Step, tmp: Path) -> None:
    assert step.targets is not None
    targets = step.targets
    ip, port = targets[schema.IP].to_numpy(np.uint32), targets[schema.PORT].to_numpy(np.uint16)
    addresses = dotted(ip)
    for fmt, name in TARGET_FILES.items():
        with atomic_open(tmp / name, "wb") as handle:
            handle.write(text_lines(format_targets(ip, port, fmt, addresses=addresses)))
    write_table(pa.Table.from_pandas(targets, preserve_index=False), tmp / "targets.parquet")


def append_log(directory: Path, summary: dict[str, Any]) -> None:
    """Append a step's line to ``log.jsonl`` (once: a line already there is not written again)."""
    path = directory / LOG_FILE
    if summary["step"] in {entry["step"] for entry in read_log(directory)}:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(summary) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_log(directory: Path) -> list[dict[str, Any]]:
    path = Path(directory) / LOG_FILE
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):  # a line cut by a kill
            entries.append(json.loads(line))
    return entries


# --- the state ------------------------------------------------------------------------------------

_SCALARS = ("phase", "part", "n_steps", "probes", "found", "outside", "unranked", "last_yield", "ingested")


def _write_state(state: State, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    scalars = {name: getattr(state, name) for name in _SCALARS}
    (directory / "state.json").write_text(json.dumps(scalars, indent=1) + "\n", encoding="utf-8")
    write_table(pa.table({"key": state.known}), directory / "known.parquet")
    write_table(pa.table({"ip": state.live}), directory / "live.parquet")
    lengths = [np.full(v.size, k, np.uint8) for k, v in state.scanned.items()]
    keys = list(state.scanned.values())
    write_table(
        pa.table(
            {
                "length": np.concatenate([np.zeros(0, np.uint8), *lengths]),
                "key": np.concatenate([np.zeros(0, np.uint64), *keys]),
            }
        ),
        directory / "scanned.parquet",
    )
    write_table(pa.Table.from_pandas(state.held, preserve_index=False), directory / "held.parquet")
    write_table(
        pa.Table.from_pandas(state.calibration, preserve_index=False), directory / "calibration.parquet"
    )
    if state.tail is not None:
        write_table(pa.Table.from_pandas(state.tail, preserve_index=False), directory / "tail.parquet")


def read_state(step_folder: Path) -> State:
    directory = step_folder / STATE_DIR
    try:
        scalars = json.loads((directory / "state.json").read_text(encoding="utf-8"))
        known = np.asarray(read_table(directory / "known.parquet")["key"], np.uint64)
        live = np.asarray(read_table(directory / "live.parquet")["ip"], np.uint32)
        scanned_table = read_table(directory / "scanned.parquet")
        held = read_table(directory / "held.parquet").to_pandas()
        calibration = read_table(directory / "calibration.parquet").to_pandas()
        tail = (
            read_table(directory / "tail.parquet").to_pandas()
            if (directory / "tail.parquet").is_file()
            else None
        )
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{step_folder}: its state is incomplete or unreadable ({exc})") from None
    length = np.asarray(scanned_table["length"], np.int64)
    key = np.asarray(scanned_table["key"], np.uint64)
    scanned = {int(k): key[length == k] for k in np.unique(length).tolist()}
    return State(
        **{name: scalars[name] for name in _SCALARS},
        known=known, live=live, scanned=scanned, held=held, calibration=calibration, tail=tail,
    )  # fmt: skip


def read_step(step_folder: Path) -> Step:
    """A step read back (what ``next`` needs to check and fold in its scan's findings)."""
    try:
        summary = json.loads((step_folder / STEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{step_folder}: unreadable {STEP_FILE} ({exc})") from None
    step = Step(
        int(summary["step"]), summary["kind"], summary["phase"], int(summary["part"]), summary["reason"],
        probes=int(summary["probes"]), expected_services=float(summary["expected_services"]),
    )  # fmt: skip
    if step.kind == ROWS:
        step.rows = read_table(step_folder / "rows.parquet").to_pandas()
        step.cidrs = read_table(step_folder / "cidrs.parquet").to_pandas()
    elif step.kind == TARGETS:
        step.targets = read_table(step_folder / "targets.parquet").to_pandas()
    elif step.kind != DONE:
        raise InputError(f"{step_folder}: unknown step kind {step.kind!r}")
    return step


def read_summary(step_folder: Path) -> dict[str, Any]:
    return json.loads((step_folder / STEP_FILE).read_text(encoding="utf-8"))


def read_found(directory: Path, number: int, backend: Any) -> Any:
    """The services step ``number``'s scan found (stored in the next step's folder)."""
    from gpsgpu.io.parquet import read_services

    return read_services(step_dir(directory, number + 1) / found_name(number), backend)


def file_digest(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = [
    "CAMPAIGN_FILE",
    "LOG_FILE",
    "TARGET_FILES",
    "Campaign",
    "file_digest",
    "model_fingerprint",
    "read_campaign",
    "read_found",
    "read_log",
    "read_state",
    "read_step",
    "read_summary",
    "step_dir",
    "step_dirs",
    "write_campaign",
    "write_step",
]
