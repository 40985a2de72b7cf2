"""Sign-in with the admin token and sign-out (session.py holds the cookie's format)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mmsearch.api.console.pages import forbidden, render, secure, session_of, sessions, to_login
from mmsearch.api.console.session import COOKIE, LOGIN_COOKIE, PATH, same

router = APIRouter(prefix=PATH)


def _login_page(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, status=status, login_csrf=token, error=error)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path=PATH, max_age=600,
                        secure=secure(request))
    return response


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    return _login_page(request)


@router.post("/login")
async def login(request: Request, token: Annotated[str, Form(max_length=1_000)] = "",
                csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    if not same(csrf, request.cookies.get(LOGIN_COOKIE)):
        return forbidden(request)
    known = sessions(request)
    if not known.check_token(token):
        return _login_page(request, "That is not the admin token (MMSEARCH_ADMIN_TOKEN, or HOME/admin_token).", 401)
    value, _ = known.issue()
    response = RedirectResponse(PATH, status_code=303)
    response.set_cookie(COOKIE, value, httponly=True, samesite="strict", path=PATH, max_age=known.seconds,
                        secure=secure(request))
    response.delete_cookie(LOGIN_COOKIE, path=PATH)
    return response


@router.post("/logout")
async def logout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    session = session_of(request)
    if session is not None and not same(csrf, session.csrf):
        return forbidden(request)
    response = to_login()
    response.delete_cookie(COOKIE, path=PATH)
    return response
