"""`gym-grpc view`: a self-contained HTML page of rollout files, or `--serve` to follow them (or a live stream)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    view = sub.add_parser("view", help="see rollouts: one offline HTML file, or --serve to follow a collection live")
    view.add_argument("rollouts", nargs="*", type=Path, help="rollout JSONL files (their _failures.jsonl too)")
    view.add_argument("--output", "-o", type=Path, help="the HTML file (default: ROLLOUTS with .html)")
    view.add_argument("--title", help="the page's title (default: the file name)")
    view.add_argument("--serve", action="store_true", help="serve on localhost and follow the files as they grow")
    view.add_argument("--host", default="127.0.0.1")
    view.add_argument("--port", type=int, default=8765, help="port for --serve (0: any free port)")
    live = view.add_argument_group("a live CollectRollouts stream (with --serve)")
    live.add_argument("--server", help="HOST:PORT of a gym-grpc server to collect from")
    live.add_argument("--agent")
    live.add_argument("--input", type=Path, help="task rows (JSONL)")
    live.add_argument("--num-repeats", type=int, default=1)
    live.add_argument("--concurrency", type=int, default=0)
    live.add_argument("--save", type=Path, help="also append the streamed rollouts to this JSONL file")


def run_view(args: argparse.Namespace) -> int:
    from gym_grpc.viewer.rows import read_in_completion_order, with_failures

    if args.server:
        if not (args.serve and args.agent and args.input):
            print("error: --server needs --serve, --agent and --input", file=sys.stderr)
            return 2
        return _serve_stream(args)
    if not args.rollouts:
        print("error: name a rollout file (or --serve --server ...)", file=sys.stderr)
        return 2
    missing = [p for p in args.rollouts if not p.exists() and not args.serve]
    if missing:
        print(f"error: {missing[0]}: no such file", file=sys.stderr)
        return 2
    title = args.title or ", ".join(p.name for p in args.rollouts)
    if args.serve:
        from gym_grpc.viewer.live import FileFeed

        return _serve(FileFeed(args.rollouts), title, [str(p) for p in args.rollouts], args)
    from gym_grpc.viewer.page import build_page

    paths = with_failures(args.rollouts)
    t = time.perf_counter()
    html, figures = build_page(read_in_completion_order(paths), title, [str(p) for p in paths])
    output = args.output or args.rollouts[0].with_suffix(".html")
    output.write_text(html, encoding="utf-8")
    print(
        f"wrote {output}: {figures['rollouts']:,} rollouts from {', '.join(str(p) for p in paths)}, "
        f"{figures['bytes'] / 1e6:.1f} MB, in {time.perf_counter() - t:.1f} s"
    )
    return 0


def _serve(feed: object, title: str, sources: list[str], args: argparse.Namespace) -> int:
    from gym_grpc.viewer.live import serve

    def ready(url: str) -> None:
        print(f"serving the viewer on {url} (Ctrl-C stops)", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(feed, title, sources, args.host, args.port, ready))  # type: ignore[arg-type]
    return 0


def _serve_stream(args: argparse.Namespace) -> int:
    import os

    from gym_grpc.client import CollectionRequest, GymClient
    from gym_grpc.protocol.codec.task import task_from_json
    from gym_grpc.viewer.live import StreamFeed
    from gym_grpc.viewer.rows import read_rows

    tasks = [task_from_json(row, f"{args.input}") for row in read_rows([args.input])]
    request = CollectionRequest(
        agent=args.agent,
        tasks=tasks,
        num_repeats=args.num_repeats,
        max_in_flight=args.concurrency,
        with_training=True,  # the token view then shows the server's training view (segments, policy versions)
    )

    async def stream():  # type: ignore[no-untyped-def]
        async with GymClient(args.server, token=os.environ.get("GYM_GRPC_TOKEN")) as client:
            async for event in client.stream(request):
                yield event

    feed = StreamFeed(stream, args.save)
    return _serve(feed, args.title or f"{args.agent} @ {args.server}", [args.server], args)
