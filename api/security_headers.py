"""Security headers on every response (a `before_send` hook).

Pages are server-rendered with htmx and /static/app.js, with no inline script, inline style
or event-handler attribute, so the policy needs no 'unsafe-inline' and no 'unsafe-eval'
(htmx is configured in base.html not to inject its indicator <style> nor to eval). Rules for
templates: no `<script>` bodies, no `style="..."`, no `onclick=`/`onsubmit=`; put behaviour
in /static/app.js (e.g. `data-confirm="Question?"` on a form asks before submitting).

The API documentation viewers under /schema render inline bootstrap code and load their
bundle from a CDN (Litestar's plugins); they get a looser policy of their own.
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# The API docs' viewer is served from the package (api/api_docs.py); its page starts it
# with an inline script, so only /schema pages allow inline code, and nothing off-site.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none';"
    " base-uri 'none'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000"


def headers_for(path: str, *, tls: bool) -> list[tuple[str, str]]:
    out = [
        ("Content-Security-Policy", DOCS_CSP if path.startswith("/schema") else PAGE_CSP),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    ]
    if tls:
        out.append(("Strict-Transport-Security", HSTS))
    return out


async def add_security_headers(message: Message, scope: Scope) -> None:
    """A Litestar `before_send` hook: it sees every response, errors and 404s included."""
    if message["type"] != "http.response.start" or scope["type"] != "http":
        return
    headers = MutableScopeHeaders.from_message(message)
    for name, value in headers_for(scope["path"], tls=scope.get("scheme") == "https"):
        if name not in headers:
            headers[name] = value
