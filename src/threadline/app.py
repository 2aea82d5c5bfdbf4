"""`create_app(settings)`: the composition root, the one module that wires every part together."""

from __future__ import annotations

import functools

from litestar import Litestar
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from threadline import __version__
from threadline.http.access_log import access_log
from threadline.http.admin_threads import AdminThreadController
from threadline.http.agents import AgentController
from threadline.http.ai_sdk import AiSdkController
from threadline.http.auth import jwt_auth
from threadline.http.chat import ChatController
from threadline.http.cors import cors_config, only_allowed_origins
from threadline.http.dependencies import DEPENDENCIES
from threadline.http.errors import problem_details_config
from threadline.http.health import health, ready
from threadline.http.openai_compat import OpenAICompatController
from threadline.http.playground import playground_routes
from threadline.http.rate_limits import AuthFailureLimit, UserRateLimit
from threadline.http.runs import RunController
from threadline.http.search import SearchController
from threadline.http.stats import admin_stats, my_stats
from threadline.http.thread_actions import ThreadActionsController
from threadline.http.threads import ThreadController
from threadline.http.usage import AdminUsageController, UsageController
from threadline.lifespan import lifespan
from threadline.logs import logging_plugin
from threadline.settings import Settings, ensure_jwt_secret


class MetricsController(PrometheusController):
    path = "/metrics"


def create_app(settings: Settings | None = None) -> Litestar:
    settings = ensure_jwt_secret(settings or Settings.from_env())
    auth = jwt_auth(settings.auth.jwt_secret.reveal())
    prometheus = PrometheusConfig(app_name="threadline", prefix="threadline", group_path=True,
                                  exclude=["^/metrics$", "^/health$"])  # fmt: skip
    cors = cors_config(settings.cors)
    return Litestar(
        route_handlers=[
            ChatController,
            RunController,
            ThreadController,
            ThreadActionsController,
            AgentController,
            AdminThreadController,
            my_stats,
            admin_stats,
            AiSdkController,
            OpenAICompatController,
            SearchController,
            *playground_routes(),
            UsageController,
            AdminUsageController,
            health,
            ready,
            MetricsController,
        ],
        dependencies=DEPENDENCIES,
        lifespan=[functools.partial(lifespan, settings)],
        # AuthFailureLimit wraps authentication, so it runs after auth.on_app_init has added it.
        on_app_init=[auth.on_app_init, AuthFailureLimit().on_app_init],
        middleware=[access_log, prometheus.middleware, UserRateLimit()],
        plugins=[ProblemDetailsPlugin(problem_details_config()), logging_plugin()],
        cors_config=cors,
        before_send=[only_allowed_origins(cors)] if cors else [],
        request_max_body_size=settings.limits.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Threadline",
            version=__version__,
            description="A streaming chat backend: persisted threads, resumable SSE runs, token accounting.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
            security=[{"BearerToken": []}],
        ),
    )
