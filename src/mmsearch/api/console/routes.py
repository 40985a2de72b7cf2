"""The web console at /console: every page group's router (pages.py says how the pages are built)."""

from __future__ import annotations

from fastapi import APIRouter

from mmsearch.api.console import apps, datasets, iqs, jobs, keys, login, media, playground, querylog
from mmsearch.api.console.pages import HERE

router = APIRouter(include_in_schema=False)
for module in (login, apps, datasets, jobs, keys, playground, iqs, querylog, media):
    router.include_router(module.router)

__all__ = ["HERE", "router"]
