"""CSV over the REST API: the separator a request asks for, and its body as text."""

from __future__ import annotations

from typing import Any

from litestar import Request

from api.errors import ApiError
from ocs.settings_store import OperatorSettings


def separator_of(raw: str | None, ops: OperatorSettings) -> str:
    if raw is None or raw == "":
        return ops.csv_separator
    if raw in ("tab", "\\t"):
        return "\t"
    if len(raw) != 1 or raw.isalnum() or raw in "\"\r\n":
        raise ApiError(422, "invalid", "separator must be one punctuation character", "separator")
    return raw


async def csv_text(request: Request[Any, Any, Any], max_bytes: int) -> str:
    """The body as UTF-8 text (a BOM is dropped): 413 above `max_bytes`, 400 if not UTF-8."""
    body = await request.body()
    if len(body) > max_bytes:
        raise ApiError(413, "payload_too_large", f"CSV is limited to {max_bytes >> 20} MiB")
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_request", "CSV must be UTF-8 text") from None
