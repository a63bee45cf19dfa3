"""List an s3:// folder: every object's key, ETag and size, 1,000 to a request.

minio's `list_objects` turns each entry into an object field by field, which for tens of
thousands of objects costs more than the requests themselves; on an unchanged dataset the
listing is most of what is left to do. Here the same ListObjectsV2 request (signed by the
client) is read with one pass over the XML. Without the client's request method (another
minio version), `list_objects` is used as it is.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

__all__ = ["Listed", "objects"]

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True)
class Listed:
    object_name: str
    etag: str
    size: int


def objects(client: Any, bucket: str, prefix: str) -> Iterator[Listed]:
    """Every object under `prefix` (recursive), in key order; folders' markers left out."""
    execute = getattr(client, "_execute", None)
    if execute is None:
        for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
            if not obj.is_dir:
                yield Listed(obj.object_name, obj.etag or "", obj.size or 0)
        return
    token = ""
    while True:
        query = {"list-type": "2", "prefix": prefix, "max-keys": "1000", "encoding-type": "url"}
        if token:
            query["continuation-token"] = token
        response = execute("GET", bucket, query_params=query)
        root = ET.fromstring(response.data)
        for entry in root.iter(f"{_NS}Contents"):
            fields = {child.tag.removeprefix(_NS): child.text or "" for child in entry}
            name = unquote_plus(fields.get("Key", ""))
            if name and not name.endswith("/"):
                yield Listed(name, fields.get("ETag", "").strip('"'), int(fields.get("Size", 0)))
        if root.findtext(f"{_NS}IsTruncated") != "true":
            return
        token = root.findtext(f"{_NS}NextContinuationToken") or ""
        if not token:
            return
