"""The web console at /console: every page group's router (pages.py says how the pages are built)."""

from __future__ import annotations

from fastapi import APIRouter

from mmsearch.api.console import apps, datasets, jobs, keys, login, media, playground
from mmsearch.api.console.pages import HERE

router = APIRouter(include_in_schema=False)
for module in (login, apps, datasets, jobs, keys, playground, media):
    router.include_router(module.router)

__all__ = ["HERE", "router"]
