"""List an s3:// folder: every object's key, ETag and size, 1,000 to a request.

minio's `list_objects` turns each entry into an object field by field, which for tens of
thousands of objects costs more than the requests themselves; on an unchanged dataset the
listing is most of what is left to do. Here the same ListObjectsV2 request (signed by the
client) is read with one pass over the XML, and folders are listed in parallel. Without the
client's request method (another minio version), `list_objects` is used as it is.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
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


def objects(client: Any, bucket: str, prefix: str, workers: int = 8) -> list[Listed]:
    """Every object under `prefix` (recursive), in key order; folders' markers left out.

    Each folder is listed on its own (delimiter "/"), its subfolders as soon as they are
    known, `workers` at a time: `images/train/` and `labels/train/` are paged through at
    once instead of one after the other.
    """
    execute = getattr(client, "_execute", None)
    if execute is None:
        return [
            Listed(obj.object_name, obj.etag or "", obj.size or 0)
            for obj in client.list_objects(bucket, prefix=prefix, recursive=True)
            if not obj.is_dir
        ]
    found: list[Listed] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {pool.submit(_folder, execute, bucket, prefix)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                files, folders = future.result()
                found += files
                pending |= {pool.submit(_folder, execute, bucket, f) for f in folders}
    return sorted(found, key=lambda o: o.object_name)


def _folder(execute: Any, bucket: str, prefix: str) -> tuple[list[Listed], list[str]]:
    """The objects directly in one folder, and its subfolders (all pages of one listing)."""
    files: list[Listed] = []
    folders: list[str] = []
    token = ""
    while True:
        query = {
            "list-type": "2",
            "prefix": prefix,
            "delimiter": "/",
            "max-keys": "1000",
            "encoding-type": "url",
        }
        if token:
            query["continuation-token"] = token
        root = ET.fromstring(execute("GET", bucket, query_params=query).data)
        for entry in root.iter(f"{_NS}Contents"):
            fields = {child.tag.removeprefix(_NS): child.text or "" for child in entry}
            name = unquote_plus(fields.get("Key", ""))
            if name and not name.endswith("/"):
                files.append(
                    Listed(name, fields.get("ETag", "").strip('"'), int(fields.get("Size", 0)))
                )
        for common in root.iter(f"{_NS}CommonPrefixes"):
            sub = unquote_plus(common.findtext(f"{_NS}Prefix") or "")
            if sub and sub != prefix:
                folders.append(sub)
        token = root.findtext(f"{_NS}NextContinuationToken") or ""
        if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
            return files, folders
