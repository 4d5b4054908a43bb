"""The API docs viewer (Swagger UI), served from the package: no CDN, works offline.

Litestar's render plugins load their viewer from a CDN by default; here every asset comes from
``api/static/vendor/swagger-ui-*`` (the released files of swagger-ui-dist, vendored with their
licence). ``/schema`` and ``/schema/swagger`` show it; ``/swagger`` (the old documented
address) redirects there; ``/schema/openapi.json`` is the document itself.
"""

from __future__ import annotations

from litestar import get
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.response import Redirect

SWAGGER_VERSION = "5.35.0"
_ASSETS = f"/static/vendor/swagger-ui-{SWAGGER_VERSION}"
DOCS_PATH = "/schema/swagger"


def api_docs_plugin() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        js_url=f"{_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{_ASSETS}/swagger-ui-standalone-preset.js",
        path=["/", "/swagger"],
        favicon="<link rel='icon' href='data:,'>",  # no favicon request to any host
    )


@get("/swagger", opt={"auth": "public"}, include_in_schema=False)
async def swagger_redirect() -> Redirect:
    return Redirect(DOCS_PATH, status_code=308)
