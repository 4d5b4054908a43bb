"""Jinja setup and the formatting helpers every page uses (units beside money)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Request
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

from ocs import money
from ocs.settings_store import OperatorSettings

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
VERSION = "2.0"


@dataclass(frozen=True, slots=True)
class Formatter:
    """Display helpers bound to the operator's unit price, currency and time zone."""

    ops: OperatorSettings

    @property
    def currency(self) -> str:
        return self.ops.currency

    @property
    def minor_units(self) -> int:
        return money.minor_units(self.ops.currency_code)

    def amount(self, units: int) -> str:
        """Money for `units` without the currency, in the currency's minor unit (the one
        money display of the UI: `ocs.money.display`)."""
        return money.display(int(units), self.ops.unit_price, self.ops.currency_code)

    def money(self, units: int) -> str:
        return f"{self.amount(units)} {self.ops.currency}"

    def rate(self, units_per_second: int) -> str:
        per_min = money.per_minute(int(units_per_second), self.ops.unit_price)
        return f"{money.format_money(per_min, max(4, _places(per_min)))} {self.ops.currency}/min"

    def units(self, units: int) -> str:
        return f"{int(units):d}"

    def signed(self, units: int) -> str:
        return f"{int(units):+d}"

    def when(self, at: datetime | None) -> str:
        if at is None:
            return ""
        return at.astimezone(ZoneInfo(self.ops.timezone)).strftime("%Y-%m-%d %H:%M:%S")

    def duration(self, seconds: int) -> str:
        seconds = int(seconds)
        h, rest = divmod(seconds, 3600)
        m, s = divmod(rest, 60)
        return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    def setup(engine: JinjaTemplateEngine) -> None:
        env = engine.engine
        env.globals["app_version"] = VERSION
        env.trim_blocks = True
        env.lstrip_blocks = True

    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=setup)


def render_page(
    request: Request[Any, Any, Any],
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> Template:
    ctx: dict[str, Any] = {"logged_in": _logged_in(request)}
    ctx.update(context or {})
    return Template(template_name=name, context=ctx, status_code=status)


def _logged_in(request: Request[Any, Any, Any]) -> bool:
    try:
        return bool(request.session.get("admin"))
    except Exception:  # no session middleware on this route (e.g. a 404 before routing)
        return False
