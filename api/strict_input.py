"""Input the handlers never see: refused with a 400 before any parsing or database work.

An app-level guard (it runs after `api.auth.auth_guard`, so only for callers that may reach
the route) checks, for every route whoever wrote it:

* no NUL character in the path, the query string, form fields or JSON strings (PostgreSQL
  text cannot hold one, and a file name with one makes the OS call fail);
* integer path parameters are ids: 0 .. 2**31 - 1 (the id columns are 32-bit; a handler with
  64-bit ids sets ``opt={"max_id": 2**63 - 1}``); integer query parameters stay within
  ±(2**53 - 1);
* a JSON body is well-formed, at most ``MAX_JSON_DEPTH`` deep, and has the handler's declared
  ``data`` type *strictly*: ``{"units": "10"}`` is a 400 when `units` is an int. (Litestar
  converts bodies leniently, coercing strings to numbers; the docs promise a 400.)
"""

from __future__ import annotations

import weakref
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import ClientException, ValidationException
from litestar.handlers.base import BaseRouteHandler

MAX_ID = 2**31 - 1
MAX_QUERY_INT = 2**53 - 1
MAX_JSON_DEPTH = 64
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _HandlerInfo:
    """What the guard needs to know about one handler, computed once."""

    __slots__ = ("data_type", "int_queries")

    def __init__(self, handler: BaseRouteHandler) -> None:
        params = getattr(handler, "parsed_fn_signature", None)
        fields = params.parameters if params is not None else {}
        data = fields.get("data")
        self.data_type: Any = data.annotation if data is not None else None
        self.int_queries: set[str] = set()
        for name, fd in fields.items():
            if name in ("data", "request", "scope", "state", "headers", "cookies"):
                continue
            kinds = [t.annotation for t in fd.inner_types] if fd.is_optional else [fd.annotation]
            if int in kinds and bool not in kinds:
                alias = getattr(fd.kwarg_definition, "query", None)
                self.int_queries.add(str(alias or name))


_INFO: weakref.WeakKeyDictionary[BaseRouteHandler, _HandlerInfo] = weakref.WeakKeyDictionary()


def _info(handler: BaseRouteHandler) -> _HandlerInfo:
    info = _INFO.get(handler)
    if info is None:
        info = _INFO[handler] = _HandlerInfo(handler)
    return info


def _bad(detail: str, field: str = "") -> ValidationException:
    extra = [{"message": detail, "key": field}] if field else None
    return ValidationException(detail=detail, extra=extra)


def _check_strings(value: Any, where: str) -> None:
    """No NUL in any string of a decoded JSON document; depth bounded (iterative walk)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _bad(f"{where} is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, str):
            if "\x00" in item:
                raise _bad(f"{where} contains a NUL character")
        elif isinstance(item, dict):
            for key, sub in item.items():
                if "\x00" in key:
                    raise _bad(f"{where} contains a NUL character")
                stack.append((sub, depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, depth + 1) for sub in item)


def json_depth_ok(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text nests at most `limit` arrays/objects (a linear scan that
    skips strings): checked before decoding so a 100k-deep document never recurses."""
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


async def _check_json(connection: ASGIConnection[Any, Any, Any, Any], data_type: Any) -> None:
    body = await connection.body()  # type: ignore[attr-defined]
    if not body.strip():
        return
    if not json_depth_ok(body):
        raise _bad(f"JSON body is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        decoded = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ClientException(f"malformed JSON body: {exc}") from None
    _check_strings(decoded, "JSON body")
    if data_type is None:
        return
    try:
        msgspec.json.decode(body, type=data_type, strict=True)
    except msgspec.ValidationError as exc:
        raise _bad(str(exc), "data") from None
    except TypeError:
        return  # a type msgspec cannot check strictly: Litestar's own parsing applies


async def input_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    scope = connection.scope
    if "\x00" in scope["path"] or b"\x00" in scope.get("query_string", b"") or \
            b"%00" in scope.get("query_string", b""):
        raise _bad("the request path or query contains a NUL character")
    info = _info(handler)
    max_id = int(handler.opt.get("max_id", MAX_ID))
    for name, value in connection.path_params.items():
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= max_id:
            raise _bad(f"{name} is out of range", name)
    if info.int_queries:
        for name in info.int_queries:
            for raw in connection.query_params.getall(name, []):
                text = str(raw).strip()
                digits = text.lstrip("+-")
                if not digits.isascii():  # "²²…" is isdigit() but int() refuses it
                    raise _bad(f"{name} is not a whole number", name)
                if digits.isdigit() and len(digits) > 16 and abs(int(text)) > MAX_QUERY_INT:
                    raise _bad(f"{name} is out of range", name)
    if scope.get("method") not in _UNSAFE:
        return
    content_type, _ = connection.content_type  # type: ignore[attr-defined]
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await connection.form()  # type: ignore[attr-defined]
        for key, value in form.multi_items():
            if "\x00" in key or (isinstance(value, str) and "\x00" in value):
                raise _bad(f"form field {key!r} contains a NUL character")
    elif content_type == "application/json" or (
        content_type in ("", "text/plain") and info.data_type is not None
    ):
        await _check_json(connection, info.data_type)
