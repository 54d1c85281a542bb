"""Refuse writes that another site's page sent (CSRF), for every area at once.

A browser names the page's origin on every POST/PUT/PATCH/DELETE (``Origin``, or at
least ``Sec-Fetch-Site``); a write whose origin is another host is refused with 403.
Programs (curl, the API clients) send neither header and are not affected.

Comparing Origin with ``Host`` is sound only because :mod:`web.auth` refuses, before
this hook runs, a Host that is not one of the server's names: otherwise a DNS-rebinding
page (``Host`` and ``Origin`` both evil.example) would pass as same-site. The session
cookie is also ``SameSite=Lax``, so another site's forms and fetches do not carry it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Request, abort, current_app, request

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def cross_site(req: Request | None = None) -> bool:
    """A request (default: the current one) sent by a page of another site."""
    req = request if req is None else req
    origin = req.headers.get("Origin")
    if origin and origin != "null":
        try:
            return urlsplit(origin).netloc != req.host
        except ValueError:  # "http://[" and the like: no page of ours sends that
            return True
    return req.headers.get("Sec-Fetch-Site") == "cross-site"


def refuse_cross_site_writes() -> None:
    """The before-request hook: 403 for a write from another site's page."""
    if request.method in WRITES and cross_site() and not _trusted():
        abort(403, description="a write from another site's page is refused (CSRF)")


def _trusted() -> bool:
    """An origin the app's CORS allow-list names (web/sessions_api.py, CORS_ORIGINS)."""
    rule = current_app.extensions.get("cors_trusted")
    return rule is not None and rule(request)


def admits(app: Flask, req: Request) -> bool:
    """Whether :func:`refuse_cross_site_writes` lets ``req`` through (for
    ``POST /predict``'s fast path, :mod:`web.predict_wsgi`, which has no request
    context)."""
    return not (req.method in WRITES and cross_site(req))


def init_app(app: Flask) -> None:
    app.before_request(refuse_cross_site_writes)
