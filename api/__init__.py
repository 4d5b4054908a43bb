"""Admin API + operator web UI (Litestar).

Entry points
------------
* ``api.app.create_app(ctx: ServeContext) -> Litestar``: the whole ASGI app.
* ``api.server.start_web(ctx) -> Part``: runs it with uvicorn on ``settings.web_host`` /
  ``settings.web_port`` as an asyncio task (``await part.stop()`` shuts it down cleanly).
  The database must already be connected (``ocs.db.init_db``).
* ``api.cli.add_commands(subparsers)``: ``ocs admin set-password``,
  ``ocs apikey create|list|revoke`` and ``ocs operator add|list|passwd|role|disable|enable``.

Adding routes from another module
---------------------------------
``api.app.ROUTE_MODULES`` lists module names; each module exposes ``ROUTES: list`` of Litestar
route handlers/controllers/routers. A listed module that does not exist yet is skipped
(``api.routes_cdr`` is listed for the CDR / billing screens). Rules the app applies to
every route, whoever wrote it:

* Paths under ``/api/`` need an API key (``X-API-Key: ...`` or ``Authorization: Bearer ...``);
  ``request.state.api_key`` is the ``ApiKey`` row. No browser session, no CSRF there.
* ``/schema*`` and ``/metrics`` accept an API key or an operator's browser session.
* Every other path needs an operator's browser session; unauthenticated page requests are
  redirected to ``/login``. A handler opts out with ``opt={"auth": "public"}``.
* Roles (``api.permissions``): reading needs ``readonly``, changing needs ``operator``, the
  Config/Costs/settings/tariffs/Operators/API-keys paths and the bulk-money writes (voucher
  batches, card batches, accounts CSV import) need ``admin``; a handler sets its
  own with ``opt={"role": "admin"}``. 403 otherwise. Templates get ``can(method, path)``.
* Record changes in the audit log: ``await api.auth.audit_log(request, "object.verb",
  "object id", {details})`` (or ``ocs.audit.record(actor, ...)`` outside a request); use
  ``api.auth.actor(request)`` as the ledger ``actor``.
* Input is checked before handlers run (``api.strict_input``): no NUL anywhere, integer
  path ids 0..2**31-1 (a handler with 64-bit ids sets ``opt={"max_id": 2**63 - 1}``), JSON
  bodies decoded strictly against the ``data`` type. Parse amounts with ``ocs.numbers``.
* Templates: no inline ``<script>``/``<style>``/``style=``/``on...=`` (the CSP forbids them);
  behaviour goes in ``/static/app.js`` (``data-confirm="Question?"`` on a form asks first).
* Unsafe methods (POST/PUT/PATCH/DELETE) outside ``/api/`` need the CSRF token: put
  ``{{ csrf_input | safe }}`` in every form (or send the ``X-CSRFToken`` header).
* Page templates extend ``base.html`` (blocks ``title``, ``content``; set ``active`` to
  the nav item: dashboard, config, supervision, cdr, users, costs, vouchers). Jinja filters
  ``units`` (thousands-grouped integer) and ``money`` (units → "20,38 Euros" at the
  configured unit price: pass ``ops`` — ``await api.web.page_context(request)`` gives
  ``ops`` and ``flash``).
* API errors: raise ``api.errors.ApiError(status, error, detail=..., field=...)``; the body
  is ``{"error": ..., "detail": ..., "field": ...}``.
* The running ``ServeContext`` is ``api.web.ctx_of(request)``.
"""
