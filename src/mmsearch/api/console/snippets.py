"""The playground's request as code to copy: curl with an API key, and the official Volcengine Python SDK
(its generic `Service` signs with the key's access key id and secret, as the README shows)."""

from __future__ import annotations

import json
import pprint
from typing import Any
from urllib.parse import urlsplit

PICTURE = "data:image/jpeg;base64,…"  # a picture's data URI is shown shortened: the page already holds it


def _shown(body: dict[str, Any]) -> dict[str, Any]:
    query = dict(body.get("query") or {})
    if "image_url" in query:
        query["image_url"] = PICTURE
    return {**body, "query": query}


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def curl(base_url: str, app_id: str, body: dict[str, Any]) -> str:
    url = f"{base_url.rstrip('/')}/api/v1/application/{app_id}/search"
    data = json.dumps(_shown(body), ensure_ascii=False)
    return (f"curl -s -X POST {_shell_quote(url)} \\\n  -H \"Authorization: Bearer $MMSEARCH_API_KEY\" "
            f"-H 'Content-Type: application/json' \\\n  -d {_shell_quote(data)}")


def python_sdk(base_url: str, app_id: str, body: dict[str, Any]) -> str:
    parts = urlsplit(base_url)
    data = pprint.pformat(_shown(body), sort_dicts=False, width=100)  # a Python literal: True, None
    return f'''import json
import os

from volcengine.ApiInfo import ApiInfo
from volcengine.base.Service import Service
from volcengine.Credentials import Credentials
from volcengine.ServiceInfo import ServiceInfo

credentials = Credentials(os.environ["MMSEARCH_ACCESS_KEY_ID"], os.environ["MMSEARCH_SECRET_ACCESS_KEY"],
                          "aisearch", "cn-beijing")
info = ServiceInfo({parts.netloc!r}, {{"Accept": "application/json"}}, credentials, 10, 10, {parts.scheme!r})
client = Service(info, {{"Search": ApiInfo("POST", {f"/api/v1/application/{app_id}/search"!r}, {{}}, {{}}, {{}})}})
body = {data}
print(json.loads(client.json("Search", {{}}, json.dumps(body, ensure_ascii=False))))
'''
