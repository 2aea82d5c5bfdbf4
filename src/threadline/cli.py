"""`threadline serve | migrate | token | worker | reembed`: the same factories the app uses, from a shell."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType

import uvicorn

from threadline.db import migrate as migrations
from threadline.embedded import EmbeddedUrls, embedded_services
from threadline.http.auth import issue_token
from threadline.reembed import reembed as reembed_messages
from threadline.settings import Settings, ensure_jwt_secret
from threadline.worker import run_worker

log = logging.getLogger("threadline")


@contextmanager
def resolved_services(settings: Settings, *, redis: bool = True) -> Iterator[EmbeddedUrls]:
    """The configured Postgres and Redis, or embedded ones under the data dir for as long as needed."""
    data_dir = settings.server.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    need_postgres, need_redis = settings.database.url is None, redis and settings.redis.url is None
    with embedded_services(data_dir, postgres=need_postgres, redis=need_redis) as embedded:
        urls = EmbeddedUrls(
            database_url=settings.database.url or embedded.database_url,
            redis_url=settings.redis.url or embedded.redis_url,
        )
        if not need_postgres:
            log.info("postgres: DATABASE_URL")
        if not need_redis:
            log.info("redis: REDIS_URL")
        yield urls


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(settings: Settings) -> None:
    settings = ensure_jwt_secret(settings)
    # uvicorn re-raises the signal it caught once it has drained; ours then unwinds the `with`
    # below, so the embedded servers stop instead of being orphaned by a default SIGTERM death.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with resolved_services(settings) as urls:
        assert urls.database_url is not None
        assert urls.redis_url is not None
        migrations.upgrade(urls.database_url, embedding_dim=settings.memory.embedding_dim)
        # Workers are separate processes that read their settings from the environment.
        os.environ.update(
            DATABASE_URL=urls.database_url,
            REDIS_URL=urls.redis_url,
            THREADLINE_JWT_SECRET=settings.auth.jwt_secret.reveal(),
            THREADLINE_MIGRATE_ON_START="false",
        )
        log.info("model: %s", settings.model.default_model)
        uvicorn.run(
            "threadline.app:create_app",
            factory=True,
            host=settings.server.host,
            port=settings.server.port,
            workers=settings.server.workers,
            timeout_graceful_shutdown=int(settings.server.shutdown_grace_s),
            log_level=settings.log_level.lower(),
            access_log=False,
        )


def migrate(settings: Settings) -> None:
    with resolved_services(settings, redis=False) as urls:
        assert urls.database_url is not None
        migrations.upgrade(urls.database_url, embedding_dim=settings.memory.embedding_dim)
    print("database is at the newest schema")


def token(settings: Settings, user_id: str, *, admin: bool, ttl_s: int) -> None:
    settings = ensure_jwt_secret(settings)
    print(issue_token(settings.auth.jwt_secret.reveal(), user_id, admin=admin, ttl=timedelta(seconds=ttl_s)))


def worker(settings: Settings) -> None:
    # A separate worker shares the API's database, so it never starts an embedded one of its own.
    if settings.database.url is None:
        raise ValueError("`threadline worker` needs DATABASE_URL: the database the API processes use")
    asyncio.run(run_worker(settings, settings.database.url))


def reembed(settings: Settings, *, batch: int | None, limit: int | None) -> None:
    with resolved_services(settings, redis=False) as urls:
        assert urls.database_url is not None
        migrations.upgrade(urls.database_url, embedding_dim=settings.memory.embedding_dim)
        asyncio.run(reembed_messages(urls.database_url, settings, batch_size=batch, limit=limit))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="threadline", description="Threadline, a streaming chat backend.")
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the API (embedded Postgres and Redis unless configured)")
    commands.add_parser("migrate", help="bring the database to the newest schema")
    commands.add_parser("worker", help="run the background jobs (titles, idle threads, ...) without the API")
    reembed_parser = commands.add_parser(
        "reembed", help="embed every message with the configured embedder (resumable; changes dimension)"
    )
    reembed_parser.add_argument("--batch", type=int, default=None, help="messages per embedder call")
    reembed_parser.add_argument("--limit", type=int, default=None, help="stop after this many messages")
    token_parser = commands.add_parser("token", help="print a JWT for a user (development)")
    token_parser.add_argument("user", help="the user id (the token's `sub`)")
    token_parser.add_argument("--admin", action="store_true", help="grant the admin role")
    token_parser.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        if arguments.command == "serve":
            serve(settings)
        elif arguments.command == "migrate":
            migrate(settings)
        elif arguments.command == "worker":
            worker(settings)
        elif arguments.command == "reembed":
            reembed(settings, batch=arguments.batch, limit=arguments.limit)
        else:
            ttl = arguments.ttl if arguments.ttl is not None else settings.auth.token_ttl_s
            token(settings, arguments.user, admin=arguments.admin, ttl_s=ttl)
    except KeyboardInterrupt:
        return 130
    except (migrations.MissingExtension, ValueError) as error:
        print(f"threadline: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
