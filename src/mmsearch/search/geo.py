"""The location stage: move items near the user up (`boost`) or down (`demote`).

Runs after rerank and before sort, so an explicit `sort_by` still decides the order (equal sort values
keep the location order). It does nothing unless the application configures `SearchOptions.geo` and
the request carries a valid `location`; the spec says an invalid location is ignored, not refused.

For each hit whose document has a valid geo_point at `geo.field`:

    d        = haversine distance in km between the request's location and the item's, on a sphere of
               radius 6371.0088 km (the mean Earth radius)
    x        = d / radius_km
    decay(x) = linear: max(0, 1 - x)      -- full effect at the user, none from radius_km on
               exp:    2 ** -x            -- halves every radius_km
               gauss:  2 ** -(x * x)      -- half at radius_km, then falls off fast
    geo_boost = +weight * decay(x)  (boost)   or   -weight * decay(x)  (demote)

and `hit.final_score` (rerank_score, or the fused score for hits not reranked, plus geo_boost) orders
the list. `weight` is in score units: with weighted fusion and rerank every score lies in [0, 1]; with
rrf fusion the fused scores are about 1 / (rrf_k + rank), so a weight of ~0.01 is comparable there.
Items without a location (or with an unreadable one) get no adjustment and keep their score. Reranked
hits stay above the hits the reranker did not see; the stage reorders within each of the two groups.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mmsearch.errors import InvalidArgument
from mmsearch.schema.fields import DatasetSchema
from mmsearch.schema.validate import parse_coordinate
from mmsearch.search.types import GeoOptions, SearchHit

EARTH_RADIUS_KM = 6371.0088


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in km between two (latitude, longitude) points in degrees."""
    lat1, lon1 = map(math.radians, a)
    lat2, lon2 = map(math.radians, b)
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def valid_point(lat: Any, lon: Any) -> tuple[float, float] | None:
    """(lat, lon) as floats when both are numbers (or numeric strings) in range, else None."""
    la, lo = parse_coordinate(lat), parse_coordinate(lon)
    if la is None or lo is None or not -90 <= la <= 90 or not -180 <= lo <= 180:
        return None
    return la, lo


def parse_location(value: Any) -> tuple[float, float] | None:
    """The spec's `context.location` ({"latitude": "12.12", "longitude": "-13.43"}), a stored geo_point
    (numbers or strings) or a (lat, lon) pair; None for anything else or out of range."""
    if isinstance(value, Mapping):
        if "latitude" not in value or "longitude" not in value:
            return None
        return valid_point(value["latitude"], value["longitude"])
    if isinstance(value, tuple | list) and len(value) == 2:
        return valid_point(value[0], value[1])
    return None


def decay(x: float, kind: str) -> float:
    """The decay curve at x = distance / radius_km (x >= 0); 1 at x = 0."""
    if kind == "linear":
        return max(0.0, 1.0 - x)
    if kind == "exp":
        return 2.0 ** -x
    if kind == "gauss":
        return 2.0 ** -(x * x)
    raise ValueError(f"unknown decay {kind!r}")


def geo_field(schema: DatasetSchema, geo: GeoOptions | None) -> str | None:
    """The field the stage reads, or None when location is not configured. A configured field the dataset
    lacks is allowed (an application may span datasets): no item has a location there. A field of another
    type is a configuration mistake and is refused."""
    if geo is None:
        return None
    spec = schema.field(geo.field)
    if spec is not None and spec.type != "geo_point":
        raise InvalidArgument(
            f"location.field: {geo.field!r} is a {spec.type} field, not a geo_point", field="location.field"
        )
    return geo.field


def adjustment(distance_km: float, geo: GeoOptions) -> float:
    """What the stage adds to an item's ranking score at this distance."""
    effect = geo.weight * decay(distance_km / geo.radius_km, geo.decay)
    return effect if geo.mode == "boost" else -effect


def apply_location(
    hits: list[SearchHit], location: tuple[float, float] | None, geo: GeoOptions | None
) -> list[SearchHit]:
    """Set `distance_km` and `geo_boost` on hits with a location and reorder by `final_score` (reranked
    hits first, then the rest; ties keep their order). A no-op when either argument is None or the
    location is out of range. Reads the geo field from `hit.fields` (the recall stage asks the store
    for it)."""
    if geo is None or location is None:
        return hits
    user = parse_location(location)
    if user is None:
        return hits
    changed = False
    for hit in hits:
        point = parse_location(hit.fields.get(geo.field))
        if point is None:
            continue
        hit.distance_km = haversine_km(user, point)
        hit.geo_boost = adjustment(hit.distance_km, geo)
        changed = True
    if not changed:
        return hits
    return sorted(hits, key=lambda h: (not h.is_reranked, -h.final_score))
