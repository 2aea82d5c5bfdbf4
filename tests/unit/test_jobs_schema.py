"""Migration 0002 holds exactly the schema the installed pgqueuer declares."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from pgqueuer.adapters.persistence.schema_ddl import render_install
from pgqueuer.domain.settings import DBSettings

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0002_jobs.py"


def _normalised(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip().rstrip(";").strip()


def test_the_migration_is_pgqueuers_install_ddl() -> None:
    spec = importlib.util.spec_from_file_location("jobs_migration", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    declared = render_install(DBSettings()).split("\n", 1)[1]
    expected = _normalised(" ".join(_normalised(s) + ";" for s in re.split(r";\s*\n\s*\n", declared)))
    migrated = _normalised(" ".join(_normalised(s) + ";" for s in module.INSTALL))
    assert migrated == expected, "pgqueuer's schema changed: add a migration with its upgrade DDL"
