"""JSON errors for the REST API: `{"error": short code, "detail": text, "field": name}`."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.response import Redirect
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from api.templating import render_page

log = logging.getLogger("api.errors")


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str = "", field: str = "") -> None:
        super().__init__(detail or error)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error}
        if self.detail:
            out["detail"] = self.detail
        if self.field:
            out["field"] = self.field
        return out


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}


def is_machine_path(path: str) -> bool:
    return path.startswith(("/api/", "/schema", "/metrics")) or path == "/api"


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def api_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, ApiError)
    if not is_machine_path(request.url.path):
        return render_page(request, "error.html", {"status": exc.status, "message": exc.detail
                                                   or exc.error}, status=exc.status)
    return _json(exc.status, exc.body())


def http_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    path = request.url.path
    if status == HTTP_500_INTERNAL_SERVER_ERROR:
        return server_error_handler(request, exc)
    if not is_machine_path(path):
        if isinstance(exc, NotAuthorizedException):
            target = "/login"
            if request.method == "GET" and path not in ("/", "/login"):
                from urllib.parse import quote

                target += "?next=" + quote(path + (f"?{request.url.query}" if request.url.query
                                                   else ""), safe="/?=&")
            if request.headers.get("hx-request"):
                return Response(b"", status_code=401, headers={"HX-Redirect": target})
            return Redirect(target, status_code=303)
        return render_page(request, "error.html", {"status": status, "message": exc.detail},
                           status=status)
    body: dict[str, Any] = {"error": _CODES.get(status, "error"), "detail": exc.detail}
    if isinstance(exc, ValidationException):
        body["error"] = "invalid_payload"
        extra = exc.extra
        if isinstance(extra, list) and extra and isinstance(extra[0], dict):
            first = extra[0]
            message = str(first.get("message") or "")
            key = str(first.get("key") or "")
            field = _field_from_message(message) if key in ("", "data") else key
            if field:
                body["field"] = field
            if message:
                body["detail"] = message
    headers = None
    if isinstance(exc, NotAuthorizedException):
        headers = {"WWW-Authenticate": 'Bearer realm="ocs"'}
    return _json(status, body, headers)


_FIELD_PATTERNS = (
    re.compile(r"at `\$\.([A-Za-z_][A-Za-z0-9_]*)"),
    re.compile(r"field `([A-Za-z_][A-Za-z0-9_]*)`"),
)


def _field_from_message(message: str) -> str:
    """The top-level body field a msgspec validation message points at."""
    for pattern in _FIELD_PATTERNS:
        match = pattern.search(message)
        if match:
            return match.group(1)
    return ""


def server_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A real bug: logged with its traceback; the caller learns nothing internal.

    (Litestar's `request.logger` needs Litestar's logging config, which the app turns off:
    the process configures logging itself, so a module logger is used.)"""
    log.error("unhandled error on %s %s", request.method, request.url.path,
              exc_info=(type(exc), exc, exc.__traceback__))
    if is_machine_path(request.url.path):
        return _json(HTTP_500_INTERNAL_SERVER_ERROR, {"error": "internal", "detail":
                                                      "internal server error"})
    return render_page(request, "error.html", {"status": 500, "message":
                                               "Internal error; see the server log."},
                       status=HTTP_500_INTERNAL_SERVER_ERROR)
