"""Brings a database to the newest schema, after checking that pgvector is there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config

_PACKAGE = Path(__file__).resolve().parents[1]
CHECK_EXTENSION = "SELECT default_version FROM pg_available_extensions WHERE name = $1"


class MissingExtension(RuntimeError):
    """The database server cannot provide an extension Threadline needs."""


def migrations_dir() -> Path:
    """`migrations/` of a source checkout, or the copy packed into an installed wheel."""
    for candidate in (_PACKAGE.parents[1] / "migrations", _PACKAGE / "_migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("Threadline's migrations directory is missing from this installation")


def alembic_config(database_url: str, *, embedding_dim: int) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    config.attributes["embedding_dim"] = embedding_dim
    return config


def sqlalchemy_url(database_url: str) -> str:
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in {"postgres", "postgresql", "postgresql+asyncpg"}:
        raise ValueError("DATABASE_URL must start with postgresql://")
    return f"postgresql+asyncpg://{rest}"


async def check_pgvector(database_url: str, *, extension: str = "vector", timeout_s: float = 10.0) -> None:
    """Fail before migrating, naming the extension, when the server cannot provide pgvector."""
    connection = await asyncpg.connect(database_url, timeout=timeout_s)
    try:
        version = await connection.fetchval(CHECK_EXTENSION, extension, timeout=timeout_s)
    finally:
        await connection.close(timeout=timeout_s)
    if version is None:
        raise MissingExtension(
            f"The PostgreSQL server at DATABASE_URL does not provide the '{extension}' extension (pgvector). "
            "Install pgvector on that server (https://github.com/pgvector/pgvector#installation), "
            "or unset DATABASE_URL to use Threadline's embedded PostgreSQL, which ships it."
        )


def upgrade(database_url: str, *, embedding_dim: int) -> None:
    """Apply every pending migration; safe to run from several processes at once."""
    asyncio.run(check_pgvector(database_url))
    command.upgrade(alembic_config(database_url, embedding_dim=embedding_dim), "head")
