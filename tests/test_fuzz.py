"""Fuzz every command's inputs: options, files and folders, and scan records.

The contract (README, issue 17): whatever the user gives, gpsgpu answers with an exit status that
tells the truth (0, 1 failed, 2 usage, 3 bad input) and one line on stderr; never a traceback, an
internal error, or a hang; and ingest accounts for every record it read. Cases run in batches in
one process each (tests/fuzz_runner.py) so hundreds of them cost seconds.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
import zstandard

from gpsgpu import cli

pytestmark = pytest.mark.slow

RUNNER = Path(__file__).with_name("fuzz_runner.py")
ALLOWED_STATUS = {0, 1, 2, 3}
LIMIT_S = 90
MAX_OPTION_CASES = 24
MAX_FILES_PER_FOLDER = 10


def gpsgpu(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gpsgpu", *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{args}: {done.stderr}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small consistent set of every kind of input gpsgpu reads."""
    root = tmp_path_factory.mktemp("world")
    w = {name: root / name for name in ("net", "model", "plan", "priors.parquet", "pred", "dn", "dist")}
    gpsgpu("simulate", "-o", str(w["net"]), "--hosts", "20000", "--seed-fraction", "0.05",
           "--truth", "always", "--export", "gps")  # fmt: skip
    gpsgpu("learn", str(w["net"] / "seed.parquet"), "-o", str(w["model"]))
    gpsgpu("plan", str(w["model"]), "-o", str(w["plan"]))
    gpsgpu("sim-scan", str(w["net"]), str(w["plan"]), "-o", str(w["priors.parquet"]))
    gpsgpu(
        "predict", str(w["model"]), str(w["priors.parquet"]), "-o", str(w["pred"]), "--plan", str(w["plan"])
    )
    for name in ("camp", "camp_run"):
        w[name] = root / name
        gpsgpu("campaign", "start", str(w["model"]), "-o", str(w[name]), "--schedule", "compatible")
    gpsgpu("portdist", "simulate", "-o", str(w["dn"]), "--probes-per-day", "3000", "--days", "3")
    gpsgpu("portdist", "build", str(w["dn"]), "-o", str(w["dist"]), "--window", "day")
    w["seed_jsonl"] = next(w["net"].glob("*.jsonl*"))
    w["pcap"] = Path(__file__).parent / "data" / "real" / "pcap" / "zeek_payload-syn.pcap"
    w["root"] = root
    return w


def _valid_argv(command: str, w: dict[str, Path], out: Path) -> list[str]:
    """A command line that works (the base each fuzz case changes one thing of)."""
    return {
        "ingest": ["ingest", str(w["seed_jsonl"]), "-o", str(out / "t.parquet")],
        "stats": ["stats", str(w["net"] / "seed.parquet")],
        "demo": ["demo", "-o", str(out / "demo"), "--hosts", "5000", "--no-xgboost"],
        "simulate": ["simulate", "-o", str(out / "net"), "--hosts", "5000", "--truth", "never"],
        "sim-scan": ["sim-scan", str(w["net"]), str(w["plan"]), "-o", str(out / "p.parquet")],
        "evaluate": ["evaluate", str(w["pred"]), "--truth", str(w["net"]), "-o", str(out / "ev"),
                     "--baselines", "none"],
        "learn": ["learn", str(w["net"] / "seed.parquet"), "-o", str(out / "m")],
        "plan": ["plan", str(w["model"]), "-o", str(out / "plan")],
        "predict": ["predict", str(w["model"]), str(w["priors.parquet"]), "-o", str(out / "pred"),
                    "--plan", str(w["plan"])],
        "portdist ingest": ["portdist", "ingest", str(w["pcap"]), "-o", str(out / "probes.parquet")],
        "portdist simulate": ["portdist", "simulate", "-o", str(out / "dn"), "--probes-per-day", "2000",
                              "--days", "2"],
        "portdist build": ["portdist", "build", str(w["dn"]), "-o", str(out / "dist"), "--window", "day"],
        "portdist neighbors": ["portdist", "neighbors", str(w["dist"]), "80"],
        "portdist distance": ["portdist", "distance", str(w["dist"]), "80", "443"],
        "portdist export": ["portdist", "export", str(w["dist"]), "-o", str(out / "e.csv")],
        "portdist block": ["portdist", "block", str(w["dn"]), "--dist", str(w["dist"])],
        "campaign start": ["campaign", "start", str(w["model"]), "-o", str(out / "camp"), "--schedule",
                           "compatible"],
        # next and run move their campaign on once; after that they answer "already counted"/"done".
        "campaign next": ["campaign", "next", str(w["camp"]), "--found", str(w["priors.parquet"])],
        "campaign status": ["campaign", "status", str(w["camp"]), "--no-plot"],
        "campaign run": ["campaign", "run", str(w["camp_run"]), "--sim", str(w["net"])],
    }[command]  # fmt: skip


def _commands() -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(command: Any, path: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = command

    walk(typer.main.get_command(cli.app), [])
    return found


# serve runs until stopped (tests/test_server_fuzz.py fuzzes it); peers trains Word2Vec for minutes.
FUZZED = [c for c in _commands() if c not in ("serve", "portdist peers")]


def _run(cases: list[dict[str, Any]], tmp_path: Path) -> list[dict[str, Any]]:
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps(cases))
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(spec)], capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _failures(results: list[dict[str, Any]]) -> list[str]:
    return [
        f"{r['status']} {r['argv']}: {r['stderr_tail']}"
        for r in results
        if r["status"] not in ALLOWED_STATUS or r["traceback"] or r["internal"] or r["timed_out"]
    ]


def _bad_values(kind: str) -> list[str]:
    if kind == "integer":
        return ["-1", "0", "abc", "99999999999999999999", ""]
    if kind == "float":
        return ["-1", "nan", "inf", "abc", "2"]
    return ["", "abc", "\x1b[31mred", "/nonexistent/x"]


def _option_cases(command: str, w: dict[str, Path], out: Path) -> list[dict[str, Any]]:
    base = _valid_argv(command, w, out)
    cases = []
    for param in _commands()[command].params:
        if param.param_type_name != "option" or getattr(param, "is_flag", False):
            continue
        flag = param.opts[0]
        if flag in ("--output", "-o", "--help", "--config"):
            continue
        kind = {"int": "integer", "float": "float"}.get(str(param.bare_type()), "text")
        for value in _bad_values(kind):
            n = len(cases)
            argv = [a.replace(str(out), str(out / f"o{n}")) for a in base]
            cases.append({"argv": [*argv, flag, value], "limit_s": LIMIT_S})
    # A value the command accepts runs it whole: a fixed sample keeps slow commands affordable.
    return random.Random(command).sample(cases, min(len(cases), MAX_OPTION_CASES))


@pytest.mark.parametrize("command", FUZZED)
def test_bad_option_values_are_one_line_errors(command: str, world: dict[str, Path], tmp_path: Path) -> None:
    cases = _option_cases(command, world, tmp_path)
    cases.append({"argv": _valid_argv(command, world, tmp_path / "valid"), "limit_s": LIMIT_S})
    results = _run(cases, tmp_path)
    assert len(results) == len(cases)
    assert results[-1]["status"] == 0, results[-1]  # the base line works: the fuzz changes one thing
    assert not _failures(results), "\n".join(_failures(results))


def _bad_files(folder: Path, valid: Path) -> list[Path]:
    """Things given where a file or folder is expected."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    empty = folder / "empty.jsonl"
    empty.write_bytes(b"")
    noise = folder / "noise.bin"
    noise.write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
    empty_dir = folder / "empty_dir"
    empty_dir.mkdir(exist_ok=True)
    garbage_meta = folder / "garbage_meta"
    garbage_meta.mkdir(exist_ok=True)
    (garbage_meta / "metadata.json").write_text('{"tool": "gpsgpu", "command": [1, 2')
    wrong_meta = folder / "wrong_meta"
    wrong_meta.mkdir(exist_ok=True)
    (wrong_meta / "metadata.json").write_text(
        '{"tool": "gpsgpu", "command": "plan", "params": {"step": "x"}}'
    )
    half = folder / f"half{valid.suffix}"
    if valid.is_file():
        data = valid.read_bytes()
        half.write_bytes(data[: len(data) // 2])
    else:
        half.write_bytes(b"PAR1")
    return [folder / "missing", empty, noise, empty_dir, garbage_meta, wrong_meta, half, Path("/dev/null")]


@pytest.mark.parametrize("command", FUZZED)
def test_bad_input_files_and_folders_are_one_line_errors(
    command: str, world: dict[str, Path], tmp_path: Path
) -> None:
    base = _valid_argv(command, world, tmp_path)
    paths = {i: a for i, a in enumerate(base) if a.startswith(str(world["root"])) or a.endswith(".pcap")}
    if not paths:
        pytest.skip(f"{command} reads no input file")
    cases = []
    for index, given in paths.items():
        for bad in _bad_files(tmp_path / f"bad{index}", Path(given)):
            n = len(cases)
            argv = [a.replace(str(tmp_path), str(tmp_path / f"o{n}")) for a in base]
            argv[index] = str(bad)
            cases.append({"argv": argv, "limit_s": LIMIT_S})
    results = _run(cases, tmp_path)
    assert len(results) == len(cases)
    assert not _failures(results), "\n".join(_failures(results))


@pytest.mark.parametrize(
    ("folder", "command"),
    [("model", "plan"), ("model", "predict"), ("plan", "predict"), ("pred", "evaluate"),
     ("net", "sim-scan"), ("plan", "sim-scan"), ("dist", "portdist neighbors"), ("dist", "portdist export")],
)  # fmt: skip
def test_every_file_of_an_output_folder_corrupted(
    folder: str, command: str, world: dict[str, Path], tmp_path: Path
) -> None:
    """Each file of a folder gpsgpu wrote, cut in half or garbled in turn: refused in one line."""
    cases = []
    files = sorted(p for p in world[folder].rglob("*") if p.is_file())
    # Every file at the top, a sample of those in subfolders (a plan holds one allowlist per port).
    top = [p for p in files if p.parent == world[folder]]
    deeper = [p for p in files if p.parent != world[folder]]
    files = top + random.Random(folder).sample(
        deeper, min(len(deeper), max(2, MAX_FILES_PER_FOLDER - len(top)))
    )
    for n, victim in enumerate(files):
        for how in ("half", "garble"):
            copy = tmp_path / f"{folder}{n}{how}"
            shutil.copytree(world[folder], copy)
            target = copy / victim.relative_to(world[folder])
            data = target.read_bytes()
            if how == "half":
                target.write_bytes(data[: len(data) // 2])
            else:
                rng = random.Random(n)
                garbled = bytearray(data)
                for _ in range(max(1, len(data) // 50)):
                    garbled[rng.randrange(len(data))] = rng.randrange(256) if data else 0
                target.write_bytes(bytes(garbled))
            argv = _valid_argv(command, world, tmp_path / f"o{len(cases)}")
            argv = [str(copy) if a == str(world[folder]) else a for a in argv]
            cases.append({"argv": argv, "limit_s": LIMIT_S})
    results = _run(cases, tmp_path)
    assert not _failures(results), "\n".join(_failures(results))


# --- scan records -------------------------------------------------------------------------------

TEMPLATES: dict[str, list[str]] = {
    "gps": [json.dumps({"ip": "1.2.3.4", "p": 80, "asn": 13335, "data": "HTTP/1.1 200 OK\r\nServer: x",
                        "fingerprint": "http", "w": 65535})],
    "lzr": [json.dumps({"saddr": "1.2.3.4", "sport": 443, "data": "\x16\x03\x01", "fingerprint": "tls",
                        "window": 64240})],
    "zgrab2": [json.dumps({"ip": "1.2.3.4", "port": 80, "data": {"http": {"status": "success",
               "protocol": "http",
               "result": {"response": {"status_code": 200, "headers": {"server": ["nginx"]},
                                       "body": "<title>x</title>"}}}}})],
    "zmap": ["saddr,sport,classification,success", "1.2.3.4,80,synack,1"],
    "censys": [json.dumps({"ip": "1.2.3.4", "services": [{"port": 22, "service_name": "SSH",
               "transport_protocol": "TCP", "banner": "SSH-2.0-x"},
               {"port": 80, "service_name": "HTTP", "transport_protocol": "TCP",
                "http": {"response": {"status_code": 200}}}]})],
}  # fmt: skip

ODD_VALUES = [None, True, -1, 0, 99999, 2**70, 1.5, "", "\x00", "1.2.3.4\x00", "x" * 5000, [], {}, [1, [2]],
              {"a": {"b": {}}}, "1e400", "\ud800"[:0] + "\u202e", "65536"]  # fmt: skip


def _mutate_json(line: str, rng: random.Random) -> str:
    record = json.loads(line)

    def poke(node: Any, depth: int = 0) -> Any:
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
            node[key] = (
                rng.choice(ODD_VALUES) if rng.random() < 0.5 or depth > 3 else poke(node[key], depth + 1)
            )
        return node

    choice = rng.randrange(6)
    if choice == 0:
        return json.dumps(poke(record))
    if choice == 1:
        return line[: rng.randrange(1, len(line))]
    if choice == 2:
        return "[" * 5000 + "]" * 5000
    if choice == 3:
        return line.replace('"', "", 1)
    if choice == 4:
        return json.dumps(poke(poke(record)))
    return "# a comment"


def _mutate_csv(line: str, rng: random.Random) -> str:
    fields = line.split(",")
    choice = rng.randrange(5)
    if choice == 0:
        fields[rng.randrange(len(fields))] = rng.choice(['"open', "", "abc", "99999", "1.2.3.4\x00", "-1"])
    elif choice == 1:
        fields = fields[: rng.randrange(len(fields))]
    elif choice == 2:
        fields.append("extra")
    elif choice == 3:
        return '"' + line
    else:
        return "# comment"
    return ",".join(fields)


def _records_file(fmt: str, container: str, folder: Path, rng: random.Random, n: int) -> Path:
    template = TEMPLATES[fmt]
    header, body = (template[0], template[1]) if fmt == "zmap" else (None, template[0])
    lines = [] if header is None else [header]
    for i in range(n):
        octets = f"10.{i // 250 % 250}.{i % 250}.{rng.randrange(1, 250)}"
        line = body.replace("1.2.3.4", octets)
        if rng.random() < 0.3:
            line = _mutate_csv(line, rng) if fmt == "zmap" else _mutate_json(line, rng)
        lines.append(line)
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    if rng.random() < 0.2:
        data = b"\xef\xbb\xbf" + data
    if rng.random() < 0.2:
        data = data.replace(b"\n", b"\r\n")
    suffix = ".csv" if fmt == "zmap" else ".jsonl"
    path = folder / f"{fmt}-{rng.randrange(10**9)}{suffix}"
    if container == "gz":
        data, path = gzip.compress(data), path.with_name(path.name + ".gz")
    elif container == "zst":
        data, path = zstandard.ZstdCompressor().compress(data), path.with_name(path.name + ".zst")
    elif container == "bz2":
        data, path = bz2.compress(data), path.with_name(path.name + ".bz2")
    elif container == "xz":
        data, path = lzma.compress(data), path.with_name(path.name + ".xz")
    if container != "plain" and rng.random() < 0.3:
        data = data[: len(data) * 2 // 3]  # truncated in transit
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("fmt", list(TEMPLATES))
def test_mutated_records_are_accounted_or_refused(fmt: str, tmp_path: Path) -> None:
    rng = random.Random(fmt)
    cases, files = [], []
    for n in range(24):
        container = ["plain", "gz", "zst", "bz2", "xz"][n % 5]
        path = _records_file(fmt, container, tmp_path, rng, n=rng.randrange(1, 60))
        out = tmp_path / f"out{n}.parquet"
        files.append((path, out))
        flags = ["-f", fmt] if n % 2 else []
        extra = ["--default-port", "80"] if fmt == "zmap" and n % 3 == 0 else []
        cases.append({"argv": ["ingest", str(path), "-o", str(out), "--max-reject-rate", "1", *flags, *extra],
                      "limit_s": LIMIT_S})  # fmt: skip
    results = _run(cases, tmp_path)
    assert not _failures(results), "\n".join(_failures(results))
    for (path, out), result in zip(files, results, strict=True):
        assert result["status"] in (0, 3), result
        if result["status"] != 0:
            continue
        counts = json.loads(out.with_name(out.stem + ".metadata.json").read_text())["counts"]
        rejects = out.with_name(out.stem + ".rejects.jsonl")
        kept = len(rejects.read_text().splitlines()) if rejects.exists() else 0
        assert counts["rejected"] == sum(counts["rejected_by_reason"].values()), (path, counts)
        assert counts["filtered"] == sum(counts["filtered_by_reason"].values()), (path, counts)
        assert kept == counts["rejected"], (path, counts, kept)
        assert counts["services"] + counts["duplicates_merged"] == counts["parsed_rows"], (path, counts)
