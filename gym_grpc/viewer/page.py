"""The viewer's page: one HTML file with its script, styles and data inline (no network when it is viewed).

Data goes in two `<script type="text/plain">` blocks: the summary (JSON, by column, see `rows.Summary`) and the
slimmed rows in chunks of CHUNK_ROWS, each gzip-compressed and base64-encoded on one line; the page decodes a chunk
(`DecompressionStream`) only when one of its rollouts is opened. In served mode the same page asks the server instead.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from gym_grpc.viewer.rows import JsonObject, Summary, slim_row

CHUNK_ROWS = 256
SCRIPTS = ("core.js", "charts.js", "overview.js", "tasks.js", "rollout.js", "main.js")  # concatenated in this order


def asset(name: str) -> str:
    return resources.files("gym_grpc.viewer").joinpath("static", name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Code that cannot end its <script> block early."""
    return text.replace("</", "<\\/")


def _json_safe(value: object, **options: Any) -> str:
    """JSON with no "<" at all (only in strings, as \\u003c): no "</script>", no "<!--" in a script block."""
    return json.dumps(value, **options).replace("<", "\\u003c")


def gzip_b64(data: bytes) -> str:
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip stream, what DecompressionStream("gzip") reads
    return base64.b64encode(packer.compress(data) + packer.flush()).decode("ascii")


def encode_chunk(rows: list[JsonObject]) -> str:
    return gzip_b64(json.dumps([slim_row(r) for r in rows], separators=(",", ":"), ensure_ascii=False).encode())


def render(meta: JsonObject, summary: JsonObject, chunks: Iterable[str]) -> str:
    """The page: the template with `meta` (title, mode, ...), the summary and the encoded chunks filled in."""
    data = (
        f'<script type="text/plain" id="gg-meta">{_json_safe(meta)}</script>\n'
        f'<script type="text/plain" id="gg-summary">{_json_safe(summary, separators=(",", ":"))}'
        "</script>\n"
        f'<script type="text/plain" id="gg-chunks">{chr(10).join(chunks)}</script>\n'
    )
    page = (
        asset("viewer.html")
        .replace("/*STYLE*/", asset("viewer.css"))
        .replace("/*SCRIPT*/", _script_safe("\n".join(asset(name) for name in SCRIPTS)))
        .replace("<!--TITLE-->", _escape(str(meta.get("title", "rollouts"))))
    )
    return page.replace("<!--DATA-->", data, 1)  # last: the data may hold any text


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_page(rows: Iterable[JsonObject], title: str, sources: list[str]) -> tuple[str, dict[str, Any]]:
    """A self-contained page of `rows`; also returns figures about it (rollouts, chunks, bytes of data)."""
    summary = Summary()
    chunks: list[str] = []
    pending: list[JsonObject] = []
    for row in rows:
        summary.add(row)
        pending.append(row)
        if len(pending) == CHUNK_ROWS:
            chunks.append(encode_chunk(pending))
            pending = []
    if pending:
        chunks.append(encode_chunk(pending))
    meta = {
        "title": title,
        "mode": "static",
        "sources": sources,
        "chunk_rows": CHUNK_ROWS,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    html = render(meta, summary.to_json(), chunks)
    return html, {"rollouts": len(summary), "chunks": len(chunks), "bytes": len(html.encode())}
