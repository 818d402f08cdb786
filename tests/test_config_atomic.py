"""Configuration precedence (defaults < TOML < environment < flags) and atomic outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpsgpu.config import IngestConfig, load_config
from gpsgpu.errors import UsageError
from gpsgpu.io.atomic import atomic_dir, atomic_open
from gpsgpu.io.metadata import metadata_path_for


def test_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "gpsgpu.toml"
    toml.write_text('[ingest]\nmax_reject_rate = 0.2\nformat = "lzr"\nmax_banner_bytes = 100\n')
    env = {"GPSGPU_MAX_BANNER_BYTES": "200", "GPSGPU_ASN_FILE": "x.dat"}
    cfg = load_config(
        IngestConfig, "ingest", file=toml, environ=env, flags={"format": "gps", "backend": None}
    )
    assert (cfg.format, cfg.max_reject_rate, cfg.max_banner_bytes, cfg.asn_file, cfg.backend) == (
        "gps",
        0.2,
        200,
        "x.dat",
        "auto",
    )


def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("[ingest]\nmax_reject_rat = 0.2\n")
    with pytest.raises(UsageError, match="unknown key"):
        load_config(IngestConfig, "ingest", file=toml, environ={})
    toml.write_text("[ingest\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_config(IngestConfig, "ingest", file=toml, environ={})
    with pytest.raises(UsageError, match="not a valid"):
        load_config(IngestConfig, "ingest", environ={"GPSGPU_MAX_BANNER_BYTES": "lots"})
    with pytest.raises(UsageError, match="no such file"):
        load_config(IngestConfig, "ingest", file=tmp_path / "none.toml", environ={})


def test_atomic_open_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_open(target) as handle:
        handle.write("new")
    assert target.read_text() == "new"


def test_atomic_dir_replaces_whole_folders(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_metadata_path() -> None:
    assert metadata_path_for(Path("x/seed.parquet")) == Path("x/seed.metadata.json")
    assert metadata_path_for(Path("x/model")) == Path("x/model/metadata.json")


def test_atomic_outputs_get_ordinary_permissions(tmp_path: Path) -> None:
    import os

    current = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "f.txt") as handle:
            handle.write("x")
        with atomic_dir(tmp_path / "d") as folder:
            (folder / "a").write_text("1")
    finally:
        os.umask(current)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("where", ["flag", "toml", "environment"])
def test_the_mode_sets_its_preset_wherever_it_is_given(where: str, tmp_path: Path) -> None:
    from gpsgpu.config import LearnConfig

    toml = tmp_path / "gpsgpu.toml"
    toml.write_text('[learn]\nmode = "improved"\n' if where == "toml" else "", encoding="utf-8")
    flags = {"mode": "improved"} if where == "flag" else {}
    environ = {"GPSGPU_MODE": "improved"} if where == "environment" else {}
    config = load_config(LearnConfig, "learn", file=toml, flags=flags, environ=environ)
    assert (config.mode, config.preset) == ("improved", "extended")
    # A preset given anywhere wins over the mode's default; compatible mode's default is gps2022.
    assert load_config(LearnConfig, "learn", file=toml, flags={**flags, "preset": "gps2022"},
                       environ=environ).preset == "gps2022"  # fmt: skip
    assert load_config(LearnConfig, "learn", environ={}).preset == "gps2022"
