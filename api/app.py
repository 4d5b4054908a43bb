"""The Litestar application: pages, REST API, live supervision, metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib
import logging
from typing import Any

from litestar import Litestar, MediaType, Response, get
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.stores.file import FileStore

from api import auth
from api.api_docs import api_docs_plugin, swagger_redirect
from api.errors import ApiError, api_error_handler, http_error_handler, server_error_handler
from api.templating import STATIC, VERSION, template_config
from api.web import CTX_KEY
from ocs import metrics
from ocs.runtime import ServeContext

log = logging.getLogger(__name__)

# Modules contributing route handlers; each exposes ROUTES: list. Missing ones are skipped.
ROUTE_MODULES: list[str] = [
    "api.auth",
    "api.routes_pages",
    "api.routes_supervision",
    "api.routes_api",
    "api.routes_cdr",
    "api.routes_ops",
    "api.routes_ops_pages",
]

STOPPING_KEY = "ocs_stopping"


def collect_routes(modules: list[str]) -> list[Any]:
    handlers: list[Any] = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                log.debug("route module %s not present; skipped", name)
                continue
            raise
        handlers.extend(getattr(module, "ROUTES", []))
    return handlers


@get("/", include_in_schema=False)
async def home() -> Redirect:
    return Redirect("/dashboard", status_code=303)


@get("/metrics", media_type=MediaType.TEXT, include_in_schema=False)
async def metrics_endpoint() -> Response[str]:
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


@get("/healthz", opt={"auth": "public"}, include_in_schema=False, media_type=MediaType.TEXT)
async def healthz() -> str:
    return "ok"


def create_app(ctx: ServeContext, *, extra_routes: list[Any] | None = None) -> Litestar:
    """The ASGI app for `ctx`. The database must be connected by the caller."""
    data_dir = ctx.settings.data_dir
    secret = auth.load_secret(data_dir)
    csrf_secret = hmac.new(secret, b"csrf", hashlib.sha256).hexdigest()
    static = create_static_files_router(
        path="/static",
        directories=[STATIC],
        opt={"auth": "public"},
        include_in_schema=False,
    )
    routes: list[Any] = [
        home,
        metrics_endpoint,
        healthz,
        swagger_redirect,
        static,
        *collect_routes(ROUTE_MODULES),
        *(extra_routes or []),
    ]
    openapi = OpenAPIConfig(
        title="Open Prepaid OCS admin API",
        version=VERSION,
        description=(
            "Provisioning API: accounts, credit, caller IDs, DIDs, tariffs, live sessions, "
            "operator settings. Authenticate with `X-API-Key: <key>` or "
            "`Authorization: Bearer <key>` (create one with `ocs apikey create NAME`)."
        ),
        path="/schema",
        render_plugins=[api_docs_plugin()],
        components=Components(
            security_schemes={
                "ApiKey": SecurityScheme(
                    type="apiKey", name="X-API-Key", security_scheme_in="header"
                ),
                "Bearer": SecurityScheme(type="http", scheme="bearer"),
            }
        ),
        security=[{"ApiKey": []}, {"Bearer": []}],
    )
    sessions_dir = data_dir / "web_sessions"
    state = State({CTX_KEY: ctx, STOPPING_KEY: asyncio.Event()})
    return Litestar(
        route_handlers=routes,
        guards=[auth.auth_guard],
        middleware=[auth.session_config().middleware],
        stores={auth.SESSION_STORE: FileStore(sessions_dir, create_directories=True)},
        csrf_config=CSRFConfig(
            secret=csrf_secret,
            cookie_name="ocs_csrf",
            cookie_httponly=False,
            cookie_samesite="strict",
            exclude=["/api/"],
        ),
        template_config=template_config(),
        openapi_config=openapi,
        exception_handlers={
            ApiError: api_error_handler,
            HTTPException: http_error_handler,
            Exception: server_error_handler,
        },
        state=state,
        debug=False,
        # Litestar's default logging starts a non-daemon queue-listener thread per app that is
        # never joined; the process configures logging itself (ocs.serve).
        logging_config=None,
    )




