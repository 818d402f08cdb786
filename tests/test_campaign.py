"""``gpsgpu campaign``: the schedule, the folder and the CLI on a small simulated Internet.

One net (2e4 hosts) and its two models are built once; the compatible campaign is checked against
``gpsgpu plan`` and ``gpsgpu predict``; one improved campaign (with a ``-b`` file blocking a /16 of
the seed) is run to its end, with snapshots of its folder taken on the way (the first targets step
and the first tail step) for the tests that need a campaign in the middle of its schedule.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gpsgpu import schema
from gpsgpu.backend import Backend
from gpsgpu.blocklist import Blocklist
from gpsgpu.campaign.schedule import DONE, ROWS, TARGETS, next_step, observe
from gpsgpu.cli import main
from gpsgpu.io.parquet import read_services, read_table, write_services
from gpsgpu.pipelines.campaign import (
    Session,
    read_rows_file,
    read_targets_file,
    run_next,
    sim_scan_step,
)

# --- helpers ---------------------------------------------------------------------------------------


def cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run ``gpsgpu -q ARGS`` in process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["-q", *map(str, args)])
                code = 0
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


def ok(*args: str, stdin: bytes | None = None) -> str:
    code, out, err = cli(*args, stdin=stdin)
    assert code == 0, f"gpsgpu {' '.join(map(str, args))}: exit {code}: {err}"
    return out


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def steps_of(camp: Path) -> list[Path]:
    return sorted(p for p in (camp / "steps").iterdir() if p.is_dir() and p.name.isdigit())


def step_json(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "step.json").read_text(encoding="utf-8"))


def without_file_paths(summary: dict[str, Any]) -> dict[str, Any]:
    """step.json less the paths of the found files (their sha256 stays)."""
    summary = json.loads(json.dumps(summary))
    for entry in summary.get("previous", {}).get("files", []):
        entry.pop("path", None)
    return summary


def cidr_bounds(cidrs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """First and last address of CIDR strings (vectorized: tail steps list ~1e5)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not cidrs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    flat = pc.list_flatten(pc.split_pattern(pa.array(cidrs), "/"))
    network = np.asarray(schema.ip_from_str(flat.take(pa.array(np.arange(0, len(flat), 2)))), np.int64)
    length = np.asarray(pc.cast(flat.take(pa.array(np.arange(1, len(flat), 2))), pa.int64()))
    return network, network + np.left_shift(np.int64(1), 32 - length) - 1


def overlapping(blocklist: Blocklist, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Which ranges [first, last] share an address with ``blocklist``."""
    if len(blocklist) == 0 or first.size == 0:
        return np.zeros(first.size, bool)
    starts, ends = blocklist.starts.astype(np.int64), blocklist.ends.astype(np.int64)
    slot = np.searchsorted(starts, last, side="right") - 1
    return (slot >= 0) & (ends[np.maximum(slot, 0)] >= first)


def rows_csv(folder: Path) -> list[tuple[int, str]]:
    text = (folder / "rows.csv").read_text(encoding="ascii")
    out = []
    for line in text.splitlines():
        port, cidr = line.split(",")
        out.append((int(port), cidr))
    return out


def listed_probes(folder: Path) -> int:
    """Probes a step's files list: CIDR sizes of rows.csv, or lines of targets.txt."""
    if (folder / "rows.csv").is_file():
        _, _, length = read_rows_file(folder)
        return int(np.left_shift(np.int64(1), 32 - length.astype(np.int64)).sum())
    if (folder / "targets.txt").is_file():
        return len((folder / "targets.txt").read_text(encoding="ascii").splitlines())
    return 0


def service_keys(frame: Any) -> np.ndarray:
    return np.sort(
        schema.pack_service(
            np.asarray(frame[schema.IP], np.uint32), np.asarray(frame[schema.PORT], np.uint16)
        )
    )


def known_of(folder: Path) -> np.ndarray:
    return np.asarray(read_table(folder / "state" / "known.parquet")["key"], np.uint64)


def sim_scan(net: Path, folder: Path, out: Path) -> Path:
    ok("sim-scan", net, folder, "-o", out, "--force")
    return out


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2e4-host net, its compatible model M and improved model MI, and a -b file blocking the /16
    that holds the most seed hosts."""
    root = tmp_path_factory.mktemp("campaign")
    net, m, mi = root / "NET", root / "M", root / "MI"
    ok("simulate", "--hosts", "2e4", "--seed", "3", "-o", net, "--truth", "always")
    ok("learn", net / "seed.parquet", "-o", m)
    ok("learn", net / "seed.parquet", "--mode", "improved", "-o", mi)
    seed = read_services(net / "seed.parquet", Backend.CPU)
    slash16 = np.asarray(seed[schema.IP], np.uint32) >> np.uint32(16)
    values, counts = np.unique(slash16, return_counts=True)
    blocked = f"{ipaddress.IPv4Address(int(values[np.argmax(counts)]) << 16)}/16"
    block = root / "block.txt"
    block.write_text(f"# a /16 of the seed\n{blocked}\n", encoding="ascii")
    return {"root": root, "net": net, "M": m, "MI": mi, "block": block}


@pytest.fixture(scope="module")
def compat(world: dict[str, Path]) -> dict[str, Path]:
    """A compatible campaign, its step 001 scanned and folded in (step 002: the predictions), beside
    'gpsgpu plan' and 'gpsgpu predict' of the same model and scan; ``at1`` is a copy at step 001."""
    root = world["root"] / "compat"
    root.mkdir()
    camp, plan, pred = root / "C", root / "P", root / "PRED"
    out = ok("campaign", "start", world["M"], "-o", camp, "--schedule", "compatible")
    assert Path(last_line(out)) == camp / "steps" / "001"
    at1 = root / "C-at-001"
    shutil.copytree(camp, at1)
    ok("plan", world["M"], "-o", plan)
    found = sim_scan(world["net"], camp / "steps" / "001", root / "f.parquet")
    out = ok("campaign", "next", camp, "--found", found)
    assert Path(last_line(out)) == camp / "steps" / "002"
    ok("predict", world["M"], found, "-o", pred, "--plan", plan, "--export", "gps")
    return {"root": root, "C": camp, "P": plan, "PRED": pred, "found": found, "at1": at1}


@pytest.fixture(scope="module")
def improved(world: dict[str, Path]) -> dict[str, Any]:
    """An improved campaign with ``-b`` run to its end: stepped by hand up to its first tail step
    (copies of the folder kept at its first targets step and its first tail step), then
    'gpsgpu campaign run --sim'."""
    from gpsgpu.pipelines.simulate import open_net
    from gpsgpu.sim.scanner import SimScanner

    root = world["root"] / "improved"
    root.mkdir()
    camp = root / "CI"
    ok("campaign", "start", world["MI"], "-o", camp, "-b", world["block"])
    internet, _ = open_net(world["net"], Backend.CPU)
    scanner = SimScanner(internet)
    session = Session.open(camp)
    snaps: dict[str, Path] = {}
    while "tail" not in snaps:
        folder, step, _ = session.current()
        assert step.kind != DONE
        if step.kind == TARGETS and "targets" not in snaps:
            snaps["targets"] = root / "snap-targets"
            shutil.copytree(camp, snaps["targets"])
        if step.kind == ROWS and step.phase == "tail":
            snaps["tail"] = root / "snap-tail"
            shutil.copytree(camp, snaps["tail"])
            break
        found, _ = sim_scan_step(scanner, folder)
        spool = root / f"found-{step.number:03d}.parquet"
        write_services(found, spool)
        run_next(camp, [str(spool)], fmt="services", session=session, echo=False)
    code, _, err = cli("campaign", "run", camp, "--sim", world["net"])
    assert code == 0, err
    return {"root": root, "C": camp, "snaps": snaps}


# --- 1. Blocklist.cut_ranges ------------------------------------------------------------------------


def _random_blocklists(rng: np.random.Generator) -> list[Blocklist]:
    out = [Blocklist.empty(), Blocklist.default()]
    for k in range(60):
        kind = k % 3
        if kind == 0:
            ips = rng.integers(0, 2**32, int(rng.integers(1, 40)), dtype=np.uint64).astype(np.uint32)
            out.append(Blocklist.from_addresses(ips))
        elif kind == 1:
            cidrs = []
            for _ in range(int(rng.integers(1, 16))):
                length = int(rng.integers(0, 33))
                network = int(rng.integers(0, 2**32)) & ~((1 << (32 - length)) - 1) & 0xFFFFFFFF
                cidrs.append(f"{ipaddress.IPv4Address(network)}/{length}")
            out.append(Blocklist.from_cidrs(cidrs))
        else:
            ips = rng.integers(0, 2**32, 20, dtype=np.uint64).astype(np.uint32)
            out.append(Blocklist.default().union(Blocklist.from_addresses(ips)))
    return out


def test_cut_ranges_equals_allowed_cidrs() -> None:
    rng = np.random.default_rng(19)
    n_whole = 0
    for blocklist in _random_blocklists(rng):
        networks, lengths = [], []
        for _ in range(40):
            length = int(rng.integers(0, 33))
            if len(blocklist) and rng.random() < 0.6:  # near a blocklisted interval: cut or covered
                i = int(rng.integers(0, len(blocklist)))
                base = int(blocklist.starts[i]) + int(rng.integers(0, 1 << min(32 - length, 20)))
            else:
                base = int(rng.integers(0, 2**32))
            networks.append(min(base, 2**32 - 1) & ~((1 << (32 - length)) - 1) & 0xFFFFFFFF)
            lengths.append(length)
        # Also networks inside a blocklisted interval, wholly blocklisted.
        for start, end in zip(blocklist.starts[:5].tolist(), blocklist.ends[:5].tolist(), strict=True):
            networks.append(int(start))
            lengths.append(32)
            for net in ipaddress.summarize_address_range(
                ipaddress.IPv4Address(start), ipaddress.IPv4Address(end)
            ):
                networks.append(int(net.network_address))
                lengths.append(net.prefixlen)
                break
        first = np.array(networks, np.int64)
        last = first + np.left_shift(np.int64(1), 32 - np.array(lengths, np.int64)) - 1
        source, network, length = blocklist.cut_ranges(first, last)
        assert source.size == network.size == length.size
        assert np.all(np.diff(source) >= 0)
        for i, (net, n) in enumerate(zip(networks, lengths, strict=True)):
            want = blocklist.allowed_cidrs(net, n)
            got = [
                f"{ipaddress.IPv4Address(int(a))}/{int(b)}"
                for a, b in zip(network[source == i], length[source == i], strict=True)
            ]
            assert got == want, (str(ipaddress.IPv4Address(net)), n)
            if blocklist.covers(net, n):
                assert got == []
                n_whole += 1
    assert n_whole > 0  # wholly blocklisted networks were tried


# --- 2. compatible = plan then predict --------------------------------------------------------------


def test_compatible_campaign_is_plan_then_predict(compat: dict[str, Path]) -> None:
    step1, plan = compat["C"] / "steps" / "001", compat["P"]
    assert (step1 / "rows.csv").read_bytes() == (plan / "rows.csv").read_bytes()
    zmap_plan = sorted(p.name for p in (plan / "zmap").glob("*.txt"))
    assert zmap_plan and zmap_plan == sorted(p.name for p in (step1 / "zmap").glob("*.txt"))
    for name in zmap_plan:
        assert (step1 / "zmap" / name).read_bytes() == (plan / "zmap" / name).read_bytes(), name

    step2 = compat["C"] / "steps" / "002"
    assert step_json(step2)["kind"] == TARGETS
    targets = set((step2 / "targets.txt").read_text(encoding="ascii").splitlines())
    predicted = set((compat["PRED"] / "predictions.txt").read_text(encoding="ascii").splitlines())
    assert targets and targets == predicted
    score = read_table(step2 / "targets.parquet")[schema.SCORE].to_numpy()
    assert score.size == len(targets)
    assert np.all(np.diff(score.astype(np.float64)) <= 0)


# --- 3. improved campaign to the end ----------------------------------------------------------------


def test_improved_campaign_to_the_end(world: dict[str, Path], improved: dict[str, Any]) -> None:
    camp = improved["C"]
    folders = steps_of(camp)
    log = [json.loads(line) for line in (camp / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["step"] for e in log] == [int(f.name) for f in folders] == list(range(1, len(folders) + 1))
    assert step_json(folders[-1])["kind"] == DONE
    assert all(step_json(f)["kind"] != DONE for f in folders[:-1])
    kinds = {step_json(f)["kind"] for f in folders}
    assert kinds == {ROWS, TARGETS, DONE}

    user = Blocklist.from_lines((world["block"]).read_text(encoding="ascii").splitlines())
    iana = Blocklist.default()
    n_rows = n_targets = 0
    for folder in folders[:-1]:
        if step_json(folder)["kind"] == ROWS:
            port, network, length = read_rows_file(folder)
            cidrs = read_table(folder / "cidrs.parquet").to_pandas()
            assert np.array_equal(port, cidrs["port"].to_numpy(np.uint16)), folder.name
            assert np.array_equal(network, cidrs["network"].to_numpy(np.uint32)), folder.name
            assert np.array_equal(length, cidrs["length"].to_numpy(np.uint8)), folder.name
            head = (folder / "rows.csv").read_text(encoding="ascii").splitlines()
            assert len(head) == len(cidrs)
            assert head[:200] == [
                f"{int(p)},{ipaddress.IPv4Address(int(n))}/{int(n_)}"
                for p, n, n_ in zip(port[:200], network[:200], length[:200], strict=True)
            ], folder.name
            first = network.astype(np.int64)
            last = first + np.left_shift(np.int64(1), 32 - length.astype(np.int64)) - 1
            assert not overlapping(user, first, last).any(), folder.name
            assert not overlapping(iana, first, last).any(), folder.name
            for allow in (folder / "zmap").glob("*.txt"):
                lines = [x for x in allow.read_text(encoding="ascii").splitlines() if x and x[0] != "#"]
                zf, zl = cidr_bounds(lines)
                assert not overlapping(user, zf, zl).any() and not overlapping(iana, zf, zl).any()
            n_rows += 1
        else:
            ip, _ = read_targets_file(folder)
            assert not user.contains(ip).any(), folder.name
            assert not iana.contains(ip).any(), folder.name
            n_targets += 1
    assert n_rows > 0 and n_targets > 0

    code, out, err = cli("campaign", "status", camp, "--json", "--no-plot")
    assert code == 0, err
    facts = json.loads(out)
    summaries = [step_json(f) for f in folders]
    assert facts["done"] is True
    assert facts["probes"] == sum(s["probes"] for s in summaries if s["kind"] != DONE)
    assert facts["services_found"] == sum(s["previous"]["new_services"] for s in summaries[1:])
    assert facts["probes"] == sum(listed_probes(f) for f in folders)
    assert [r["step"] for r in facts["steps"]] == [s["step"] for s in summaries]


# --- 4. budget -------------------------------------------------------------------------------------


def test_budget_cuts_the_last_step_to_fit(world: dict[str, Path], improved: dict[str, Any]) -> None:
    full = sum(listed_probes(f) for f in steps_of(improved["C"]))
    budget = int(0.4 * full)
    camp = world["root"] / "budget"
    ok("campaign", "start", world["MI"], "-o", camp, "-b", world["block"], "--budget", str(budget))
    ok("campaign", "run", camp, "--sim", world["net"])
    folders = steps_of(camp)
    assert step_json(folders[-1])["kind"] == DONE
    assert "budget" in step_json(folders[-1])["reason"]
    total = 0
    for folder in folders:
        summary = step_json(folder)
        listed = listed_probes(folder)
        assert summary["probes"] == listed, folder.name
        total += listed
    assert 0.99 * budget < total <= budget
    assert "cut to" in step_json(folders[-2])["reason"]


def test_sim_scan_of_a_budget_cut_plan_step_scans_rows_csv(world: dict[str, Path], tmp_path: Path) -> None:
    camp = tmp_path / "C"
    ok("campaign", "start", world["M"], "-o", camp, "--schedule", "compatible", "--budget", "1000000")
    step1 = camp / "steps" / "001"
    assert listed_probes(step1) == step_json(step1)["probes"] == 1_000_000
    found = sim_scan(world["net"], step1, tmp_path / "f.parquet")
    ip = np.asarray(read_services(found, Backend.CPU)[schema.IP], np.uint32)
    assert ip.size > 0
    ok("campaign", "next", camp, "--found", found)
    assert step_json(camp / "steps" / "002")["previous"]["outside"] == 0


# --- 5. resumable and idempotent -------------------------------------------------------------------


def test_same_found_file_twice_is_counted_once(compat: dict[str, Path]) -> None:
    camp = compat["root"] / "twice"
    shutil.copytree(compat["at1"], camp)
    first = last_line(ok("campaign", "next", camp, "--found", compat["found"]))
    code, out, err = cli("campaign", "next", camp, "--found", compat["found"])
    assert code == 0, err
    assert last_line(out) == first == str(camp / "steps" / "002")
    assert "already counted" in err
    assert [f.name for f in steps_of(camp)] == ["001", "002"]
    # The same file given twice in one call counts once.
    assert step_json(camp / "steps" / "002")["previous"]["records"] == len(
        read_services(compat["found"], Backend.CPU)
    )


def test_records_outside_the_step_are_counted_apart(compat: dict[str, Path]) -> None:
    camp = compat["root"] / "outside"
    shutil.copytree(compat["at1"], camp)
    found = read_services(compat["found"], Backend.CPU)
    listed_ports = {p for p, _ in rows_csv(camp / "steps" / "001")}
    unlisted = next(p for p in range(1, 65536) if p not in listed_ports)
    extra = found.iloc[:7].copy()
    extra[schema.PORT] = np.uint16(unlisted)
    with_extra = compat["root"] / "f-extra.parquet"
    write_services(pd.concat([found, extra], ignore_index=True), with_extra)
    ok("campaign", "next", camp, "--found", with_extra)
    step2 = camp / "steps" / "002"
    previous = step_json(step2)["previous"]
    assert previous["outside"] == 7
    assert previous["in_step"] == len(found)
    state = json.loads((step2 / "state" / "state.json").read_text(encoding="utf-8"))
    assert state["outside"] == 7
    assert not np.isin(service_keys(extra), known_of(step2)).any()
    assert np.isin(service_keys(found), known_of(step2)).all()
    # Same next step as without the extra records.
    assert (step2 / "targets.txt").read_bytes() == (
        compat["C"] / "steps" / "002" / "targets.txt"
    ).read_bytes()


def test_next_without_found_is_waiting(compat: dict[str, Path]) -> None:
    for camp in (compat["at1"], compat["C"]):  # a pending rows step, a pending targets step
        before = [f.name for f in steps_of(camp)]
        code, _, err = cli("campaign", "next", camp)
        assert code == 2, err
        assert "waiting" in one_line(err)
        assert [f.name for f in steps_of(camp)] == before


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_a_kill_during_next_leaves_the_previous_step(
    compat: dict[str, Path], monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    import gpsgpu.io.campaign as io_campaign

    camp = compat["root"] / f"killed-{error.__name__}"
    shutil.copytree(compat["at1"], camp)
    log_before = (camp / "log.jsonl").read_bytes()

    def killed(*_: Any, **__: Any) -> None:
        raise error("killed while writing the state")

    with monkeypatch.context() as patch:
        patch.setattr(io_campaign, "_write_state", killed)
        with pytest.raises(error):
            run_next(camp, [str(compat["found"])], echo=False)
    steps = camp / "steps"
    assert [p.name for p in steps.iterdir() if not p.name.startswith(".")] == ["001"]
    assert (camp / "log.jsonl").read_bytes() == log_before
    assert (steps / "001" / "state").is_dir()
    code, _, err = cli("campaign", "next", camp)  # still waiting for step 001
    assert code == 2 and "step 001" in err

    out = ok("campaign", "next", camp, "--found", compat["found"])
    assert Path(last_line(out)) == steps / "002"
    assert [p.name for p in steps.iterdir() if not p.name.startswith(".")] == ["001", "002"]
    twin = compat["C"] / "steps" / "002"
    assert step_json(steps / "002") == step_json(twin)
    for name in ("targets.txt", "targets.lzr.txt", "targets.zgrab2.csv"):
        assert (steps / "002" / name).read_bytes() == (twin / name).read_bytes()
    assert np.array_equal(known_of(steps / "002"), known_of(twin))
    log = [json.loads(x)["step"] for x in (camp / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert log == [1, 2]


def test_a_kill_between_the_step_and_its_log_line(
    compat: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gpsgpu.io.campaign as io_campaign

    camp = compat["root"] / "killed-log"
    shutil.copytree(compat["at1"], camp)

    def killed(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(io_campaign, "append_log", killed)
        with pytest.raises(KeyboardInterrupt):
            run_next(camp, [str(compat["found"])], echo=False)
    assert [f.name for f in steps_of(camp)] == ["001", "002"]  # the step is complete
    assert len((camp / "log.jsonl").read_text(encoding="utf-8").splitlines()) == 1
    code, out, err = cli("campaign", "next", camp, "--found", compat["found"])
    assert code == 0 and "already counted" in err, err
    assert Path(last_line(out)) == camp / "steps" / "002"
    log = [json.loads(x) for x in (camp / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["step"] for e in log] == [1, 2]  # the log made whole
    assert log[1] == step_json(camp / "steps" / "002")


def test_a_model_learned_again_is_refused(world: dict[str, Path], compat: dict[str, Path]) -> None:
    root = compat["root"] / "relearned"
    model, camp = root / "M", root / "C"
    shutil.copytree(world["M"], model)
    ok("campaign", "start", model, "-o", camp, "--schedule", "compatible")
    ok("learn", world["net"] / "seed.parquet", "-o", model, "--force")
    code, _, err = cli("campaign", "next", camp, "--found", compat["found"])
    assert code == 3, err
    assert "changed" in one_line(err)
    assert [f.name for f in steps_of(camp)] == ["001"]


def test_sim_scan_cli_scans_exactly_a_tail_step(world: dict[str, Path], improved: dict[str, Any]) -> None:
    from gpsgpu.campaign.schedule import in_step
    from gpsgpu.io.campaign import read_step
    from gpsgpu.pipelines.simulate import open_net
    from gpsgpu.sim.scanner import SimScanner

    snap = improved["snaps"]["tail"]
    folder = steps_of(snap)[-1]
    step = read_step(folder)
    assert step.kind == ROWS and step.phase == "tail"
    assert len(np.unique(step.cidrs["length"])) > 1  # narrowed /24s with known hosts cut out
    out = sim_scan(world["net"], folder, improved["root"] / "tail-found.parquet")
    by_cli = read_services(out, Backend.CPU)
    by_api, probes = sim_scan_step(SimScanner(open_net(world["net"], Backend.CPU)[0]), folder)
    assert probes == step.probes == listed_probes(folder)
    assert np.array_equal(service_keys(by_cli), service_keys(by_api))
    ip, port = np.asarray(by_cli[schema.IP], np.uint32), np.asarray(by_cli[schema.PORT], np.uint16)
    assert ip.size > 0 and in_step(step, ip, port).all()


def test_next_on_a_done_campaign(world: dict[str, Path], compat: dict[str, Path]) -> None:
    camp = compat["root"] / "done"
    shutil.copytree(compat["C"], camp)
    found2 = sim_scan(world["net"], camp / "steps" / "002", compat["root"] / "f2.parquet")
    done = last_line(ok("campaign", "next", camp, "--found", found2))
    assert step_json(Path(done))["kind"] == DONE
    for args in ((), ("--found", str(found2))):
        code, out, err = cli("campaign", "next", camp, *args)
        assert code == 0, err
        assert last_line(out) == done
        assert "done" in err
    assert len(steps_of(camp)) == 3


def test_a_zmap_csv_with_no_records_is_a_scan_that_found_nothing(compat: dict[str, Path]) -> None:
    camp = compat["root"] / "empty-zmap"
    shutil.copytree(compat["at1"], camp)
    empty = compat["root"] / "empty.csv"
    empty.write_text("saddr,sport\n", encoding="ascii")  # zmap -O csv -f saddr,sport, nothing found
    code, out, err = cli("campaign", "next", camp, "--found", empty, "-f", "zmap")
    assert code == 0, err
    assert Path(last_line(out)) == camp / "steps" / "002"
    assert step_json(camp / "steps" / "002")["previous"]["records"] == 0


def test_two_steps_that_found_nothing_both_count(world: dict[str, Path], tmp_path: Path) -> None:
    camp = tmp_path / "C"
    ok("campaign", "start", world["MI"], "-o", camp)
    nothing = read_services(world["net"] / "seed.parquet", Backend.CPU).iloc[:0]
    first, second = (
        write_services(nothing, tmp_path / "e1.parquet"),
        write_services(nothing, tmp_path / "e2.parquet"),
    )
    assert first.read_bytes() == second.read_bytes()  # what any two empty scans write
    assert Path(last_line(ok("campaign", "next", camp, "--found", first))) == camp / "steps" / "002"
    code, out, err = cli("campaign", "next", camp, "--found", second)
    assert code == 0, err
    assert Path(last_line(out)) == camp / "steps" / "003", err


# --- 6. purity of the schedule ---------------------------------------------------------------------


def _frames_equal(a: pd.DataFrame | None, b: pd.DataFrame | None) -> None:
    assert (a is None) == (b is None)
    if a is not None:
        pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("where", ["compatible", "improved-tail"])
def test_next_step_is_pure(
    where: str, world: dict[str, Path], compat: dict[str, Path], improved: dict[str, Any], tmp_path: Path
) -> None:
    from gpsgpu.pipelines.simulate import open_net
    from gpsgpu.sim.scanner import SimScanner

    source = compat["at1"] if where == "compatible" else improved["snaps"]["tail"]
    camp = tmp_path / "C"
    shutil.copytree(source, camp)
    session = Session.open(camp)
    folder, step, state = session.current()
    ctx = session.context()
    found, _ = sim_scan_step(SimScanner(open_net(world["net"], Backend.CPU)[0]), folder)
    found = found.to_pandas() if hasattr(found, "to_pandas") else found
    known0, live0 = state.known.copy(), state.live.copy()
    held0, calibration0 = state.held.copy(), state.calibration.copy()
    tail0 = None if state.tail is None else state.tail.copy()
    after = observe(ctx, state, step, found)
    assert np.array_equal(state.known, known0) and np.array_equal(state.live, live0)
    _frames_equal(state.held, held0)
    _frames_equal(state.calibration, calibration0)
    _frames_equal(state.tail, tail0)
    known1, held1, calibration1 = after.known.copy(), after.held.copy(), after.calibration.copy()
    tail1 = None if after.tail is None else after.tail.copy()
    unranked1, scanned1 = list(after.unranked), {k: v.copy() for k, v in after.scanned.items()}

    first, state1 = next_step(ctx, after, found)
    second, state2 = next_step(ctx, after, found)
    assert first.kind == second.kind != DONE
    assert (first.number, first.phase, first.part, first.probes) == (
        second.number, second.phase, second.part, second.probes,
    )  # fmt: skip
    _frames_equal(first.cidrs, second.cidrs)
    _frames_equal(first.targets, second.targets)
    _frames_equal(first.rows, second.rows)
    assert np.array_equal(state1.known, state2.known)
    _frames_equal(state1.held, state2.held)
    # The state given is left as it was.
    assert np.array_equal(after.known, known1)
    _frames_equal(after.held, held1)
    _frames_equal(after.calibration, calibration1)
    _frames_equal(after.tail, tail1)
    assert after.unranked == unranked1
    assert after.scanned.keys() == scanned1.keys()
    assert all(np.array_equal(after.scanned[k], scanned1[k]) for k in scanned1)


# --- 7. stdin --------------------------------------------------------------------------------------


def test_found_on_stdin_is_the_same_as_a_file(compat: dict[str, Path]) -> None:
    camp = compat["root"] / "stdin"
    shutil.copytree(compat["at1"], camp)
    out = ok("campaign", "next", camp, "--found", "-", stdin=compat["found"].read_bytes())
    step2, twin = camp / "steps" / "002", compat["C"] / "steps" / "002"
    assert Path(last_line(out)) == step2
    assert without_file_paths(step_json(step2)) == without_file_paths(step_json(twin))
    assert (step2 / "targets.txt").read_bytes() == (twin / "targets.txt").read_bytes()
    assert not list(camp.glob(".stdin.*"))  # the spooled copy is gone
    # Piped again: already counted.
    code, out, err = cli("campaign", "next", camp, "--found", "-", stdin=compat["found"].read_bytes())
    assert code == 0 and "already counted" in err and Path(last_line(out)) == step2


# --- 8. usage errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "flags", "message"),
    [
        ("M", ["--schedule", "improved"], "--schedule improved"),
        ("MI", ["--schedule", "compatible"], "--schedule compatible"),
        ("MI", ["--schedule", "bogus"], "--schedule"),
        ("MI", ["--budget", "0"], "budget"),
    ],
)
def test_start_usage_errors(
    world: dict[str, Path], tmp_path: Path, model: str, flags: list[str], message: str
) -> None:
    code, _, err = cli("campaign", "start", world[model], "-o", tmp_path / "C", *flags)
    assert code == 2, err
    assert message in one_line(err)
    assert not (tmp_path / "C" / "campaign.json").exists()


def test_start_onto_a_campaign_needs_force(world: dict[str, Path], tmp_path: Path) -> None:
    camp = tmp_path / "C"
    ok("campaign", "start", world["MI"], "-o", camp)
    empty = tmp_path / "e.parquet"
    write_services(read_services(world["net"] / "seed.parquet", Backend.CPU).iloc[:0], empty)
    ok("campaign", "next", camp, "--found", empty)
    assert len(steps_of(camp)) == 2
    code, _, err = cli("campaign", "start", world["MI"], "-o", camp)
    assert code == 2, err
    assert "--force" in one_line(err)
    assert len(steps_of(camp)) == 2
    out = ok("campaign", "start", world["MI"], "-o", camp, "--force")
    assert Path(last_line(out)) == camp / "steps" / "001"
    assert [f.name for f in steps_of(camp)] == ["001"]
    assert len((camp / "log.jsonl").read_text(encoding="utf-8").splitlines()) == 1


def test_next_on_a_folder_that_is_no_campaign(tmp_path: Path) -> None:
    (tmp_path / "NOTACAMPAIGN").mkdir()
    for path in (tmp_path / "NOTACAMPAIGN", tmp_path / "missing"):
        code, _, err = cli("campaign", "next", path, "--found", "x.parquet")
        assert code == 3, err  # observed: 3 (bad input), not 2
        assert "not a campaign folder" in one_line(err)


# --- 9. LZR and ZGrab2 target files ------------------------------------------------------------------


def test_lzr_and_zgrab2_targets_list_the_same_pairs(
    compat: dict[str, Path], improved: dict[str, Any]
) -> None:
    folders = [compat["C"] / "steps" / "002"] + [
        f for f in steps_of(improved["C"]) if step_json(f)["kind"] == TARGETS
    ]
    for folder in folders:
        # No ':', ';' or ',' in a dotted address: the three files are the same lines re-punctuated.
        gps = (folder / "targets.txt").read_bytes()
        assert gps.count(b"\n") == step_json(folder)["probes"] > 0
        assert gps.count(b":") == gps.count(b"\n")
        assert (folder / "targets.lzr.txt").read_bytes() == gps.replace(b":", b";"), folder.name
        assert (folder / "targets.zgrab2.csv").read_bytes() == gps.replace(b":", b",,,"), folder.name
    lines = (folders[0] / "targets.lzr.txt").read_text(encoding="ascii").splitlines()
    assert all(len(x.split(";")) == 2 and x.split(";")[1].isdigit() for x in lines)


# --- 10. another ingest format ------------------------------------------------------------------------


def test_found_as_gps_jsonl_gives_the_same_next_step(
    world: dict[str, Path], improved: dict[str, Any]
) -> None:
    import pyarrow as pa

    from gpsgpu.pipelines.simulate import write_gps_jsonl

    snap = improved["snaps"]["targets"]
    root = improved["root"] / "formats"
    root.mkdir()
    (number,) = {int(f.name) for f in steps_of(snap)[-1:]}
    parquet = sim_scan(world["net"], snap / "steps" / f"{number:03d}", root / "found.parquet")
    found = read_services(parquet, Backend.CPU)
    assert len(found) > 0
    jsonl = write_gps_jsonl(schema.services_to_arrow(found), root / "found.gps.jsonl.zst")
    assert isinstance(schema.services_to_arrow(found), pa.Table)
    results = {}
    for name, args in (
        ("parquet", ["--found", str(parquet)]),
        ("gps", ["--found", str(jsonl), "-f", "gps"]),
        ("auto", ["--found", str(jsonl)]),
    ):
        camp = root / name
        shutil.copytree(snap, camp)
        out = ok("campaign", "next", camp, *args)
        folder = Path(last_line(out))
        assert folder == camp / "steps" / f"{number + 1:03d}"
        summary = step_json(folder)
        summary["previous"].pop("files")
        results[name] = (summary, folder)
    base, base_folder = results["parquet"]
    assert base["kind"] == ROWS
    for name in ("gps", "auto"):
        summary, folder = results[name]
        assert summary == base, name
        assert (folder / "rows.csv").read_bytes() == (base_folder / "rows.csv").read_bytes(), name
        assert np.array_equal(known_of(folder), known_of(base_folder)), name


def test_asn_file_gives_found_records_their_asn(world: dict[str, Path], compat: dict[str, Path]) -> None:
    """Scanner output carries no ASN; a campaign started with --asn-file gives it one (as 'gpsgpu
    ingest --asn-file'), so the model's network features see the same ASNs as in the seed."""
    root = compat["root"] / "asn"
    root.mkdir()
    table = root / "asn.txt"
    table.write_text("0.0.0.0/1\t64500\n128.0.0.0/1\t64501\n", encoding="ascii")
    camp = root / "C"
    ok("campaign", "start", world["M"], "-o", camp, "--schedule", "compatible", "--asn-file", table)
    assert (camp / "asn.txt").read_text() == table.read_text()
    found = read_services(compat["found"], Backend.CPU)
    ip = np.asarray(found[schema.IP], np.uint32)
    zmap = root / "found.csv"
    ports = np.asarray(found[schema.PORT]).tolist()
    lines = [f"{a},{p}" for a, p in zip(schema.ip_to_str(ip).tolist(), ports, strict=True)]
    zmap.write_text("saddr,sport\n" + "\n".join(lines) + "\n", encoding="ascii")
    ok("campaign", "next", camp, "--found", zmap, "-f", "zmap")
    kept = read_services(camp / "steps" / "002" / "found-by-001.parquet", Backend.CPU)
    kept_ip = np.asarray(kept[schema.IP], np.uint32)
    assert len(kept) > 0
    np.testing.assert_array_equal(np.asarray(kept[schema.ASN]), np.where(kept_ip < 2**31, 64500, 64501))
    missing = root / "missing.txt"
    code, _, err = cli("campaign", "start", world["M"], "-o", root / "bad", "--asn-file", missing)
    assert code in (2, 3) and len(err.strip().splitlines()) == 1, err


def test_zmap_results_of_commands_sh_are_the_found_files(
    world: dict[str, Path], compat: dict[str, Path]
) -> None:
    """commands.sh has ZMap write saddr,sport CSVs; 'next --found results/*.csv' takes them all (one
    --found, the shell's list after it) and counts the same services as the services table."""
    camp = compat["root"] / "zmap-results"
    shutil.copytree(compat["at1"], camp)
    step = camp / "steps" / "001"
    assert "-O csv -f saddr,sport -o results/" in (step / "commands.sh").read_text()
    found = read_services(compat["found"], Backend.CPU)
    ip = schema.ip_to_str(np.asarray(found[schema.IP], np.uint32))
    port = np.asarray(found[schema.PORT])
    (step / "results").mkdir()
    files = []
    for p in np.unique(port).tolist():
        path = step / "results" / f"{p}.csv"
        path.write_text("saddr,sport\n" + "".join(f"{a},{p}\n" for a in ip[port == p]), encoding="ascii")
        files.append(path)
    out = ok("campaign", "next", camp, "--found", *files)
    assert Path(last_line(out)) == camp / "steps" / "002"
    previous = step_json(camp / "steps" / "002")["previous"]
    assert previous["records"] == len(found) and previous["outside"] == 0
    assert len(previous["files"]) == len(files)
    assert previous["new_services"] == step_json(compat["C"] / "steps" / "002")["previous"]["new_services"]
    code, _, err = cli("campaign", "next", compat["at1"], str(files[0]))
    assert code == 2 and "--found" in err
