"""Helpers shared by page handlers: the serve context, flash messages, common context."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State

from api.templating import Formatter
from ocs.runtime import ServeContext
from ocs.settings_store import OperatorSettings, load_operator_settings

CTX_KEY = "ocs_ctx"


def ctx_of(request: Request[Any, Any, Any] | State) -> ServeContext:
    state = request if isinstance(request, State) else request.app.state
    ctx = state[CTX_KEY]
    assert isinstance(ctx, ServeContext)
    return ctx


def flash(request: Request[Any, Any, Any], message: str, kind: str = "ok") -> None:
    """A one-shot message shown on the next page (after a POST-redirect-GET)."""
    items = list(request.session.get("flash", []))
    items.append([kind, message])
    request.session["flash"] = items[-5:]


def pop_flash(request: Request[Any, Any, Any]) -> list[tuple[str, str]]:
    items = request.session.get("flash") or []
    if items:
        request.session["flash"] = []
    return [(str(k), str(m)) for k, m in items]


async def page_context(request: Request[Any, Any, Any], active: str = "") -> dict[str, Any]:
    ops: OperatorSettings = await load_operator_settings()
    return {
        "ops": ops,
        "fmt": Formatter(ops),
        "flash": pop_flash(request),
        "active": active,
    }


def actor_of(request: Request[Any, Any, Any]) -> str:
    """Who is acting, for ledger entries and the audit log: the API key's name on /api,
    otherwise the logged-in operator ("admin" while the UI has a single operator)."""
    key = getattr(request.state, "api_key", None)
    if key is not None:
        return f"api:{key.name}"[:64]
    try:
        name = request.session.get("operator") or request.session.get("user")
    except Exception:  # no session on this route
        name = None
    return str(name or "admin")[:64]


async def form_dict(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The submitted form as plain strings (last value wins), without the CSRF field."""
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if key == "_csrf_token":
            continue
        out[key] = value if isinstance(value, str) else ""
    return out


_RATING_FIELDS = ("prefix", "h1_rate", "h2_rate", "connection_charge", "h2_begin", "h2_end",
                  "initial_block", "increment", "barred")


def rating_field(exc: Exception) -> str:
    """The tariff field a rating.RatingError message names (they say 'tariff X: field ...')."""
    text = str(exc)
    for name in _RATING_FIELDS:
        if f" {name} " in f" {text} ":
            return name
    return "prefix" if "prefix" in text else ""
