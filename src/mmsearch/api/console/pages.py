"""What every console page shares: the templates, the signed-in session, CSRF checks and error pages.

Each page group is its own router module (`login`, `datasets`, `apps`, `playground`, `keys`, `jobs`, `iqs`,
`querylog`, `media`); `routes.py` gathers them. Pages call the engine and the catalog directly, the same
functions the HTTP APIs call, so nothing is implemented twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from mmsearch.api.console.session import COOKIE, PATH, Session, Sessions, same

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
# `tojson` (a result's display fields) writes Chinese as itself, not as \uXXXX escapes; <, >, & and ' stay escaped
templates.env.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
CSRF_HEADER = "X-CSRF-Token"  # htmx requests send the session's token in this header (base.html sets it)

# script-src 'self' keeps inline scripts and handlers out: the console's own JS is static/console.js and htmx
# (vendored). Pictures of results may live anywhere the dataset points (http/https) or be data URIs.
CSP = ("default-src 'self'; img-src 'self' data: blob: http: https:; media-src 'self' http: https:; "
       "style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin"}


def sessions(request: Request) -> Sessions:
    return request.app.state.console_sessions


def session_of(request: Request) -> Session | None:
    return sessions(request).read(request.cookies.get(COOKIE))


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def to_login() -> RedirectResponse:
    return RedirectResponse(f"{PATH}/login", status_code=303)


def see(url: str) -> RedirectResponse:
    """After a successful form: back to a page by GET (reloading it does not post the form again)."""
    return RedirectResponse(url, status_code=303)


def render(request: Request, name: str, session: Session | None, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"csrf": session.csrf if session else "", **context},
                                      status_code=status, headers=HEADERS)


class Refused(Exception):
    """A console request answered before its handler's work: not signed in, or a CSRF mismatch. Raised by
    `signed_in` and `checked`; the app answers it with its response (`on_refused`)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def on_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return exc.response


def signed_in(request: Request) -> Session:
    """The session of a page's request, or Refused: to the sign-in page."""
    session = session_of(request)
    if session is None:
        raise Refused(to_login())
    return session


def checked(request: Request, csrf: str = "") -> Session:
    """The session of a state-changing request whose CSRF token matches, or Refused (form_session's answer)."""
    session = form_session(request, csrf)
    if not isinstance(session, Session):
        raise Refused(session)
    return session


def form_session(request: Request, csrf: str = "") -> Session | Response:
    """The session of a state-changing request, or the response refusing it (not signed in, or a CSRF mismatch).
    The token comes from the form's `csrf` field or, for htmx calls, the X-CSRF-Token header."""
    session = session_of(request)
    if session is None:
        return to_login()
    if not same(csrf or request.headers.get(CSRF_HEADER), session.csrf):
        return forbidden(request)
    return session


def forbidden(request: Request) -> HTMLResponse:
    return render(request, "error.html", None, status=403, title="Request refused",
                message="This form is out of date or was not sent by the console (CSRF check failed). "
                        "Reload the page and try again.")


def not_found(request: Request, session: Session, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", session, status=404, title=title, message=message)
