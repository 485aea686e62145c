"""The `gym-grpc` command: serve, collect, demo, new-env, list, view, export, reverify, aggregate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import grpc

from gym_grpc.errors import GymError

# `collect` exits with this status when rollouts failed (their rows are in OUTPUT_failures.jsonl); --allow-failures: 0.
EXIT_ROLLOUTS_FAILED = 3


def _limit(value: str) -> int | None:
    if value.lower() in ("null", "none", ""):
        return None
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gym-grpc", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("GYM_GRPC_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="host the configured environments, agents and models over gRPC")
    serve.add_argument("--config", required=True, type=Path)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N worker processes behind one front (Collect/StreamRollouts; see gym_grpc/server/workers.py)",
    )
    serve.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="Ray cluster of the environments with a ray: block (default: server.ray.address, else a new local one)",
    )

    collect = sub.add_parser("collect", help="collect scored rollouts from a server into JSONL")
    collect.add_argument(
        "--server",
        dest="servers",
        action="append",
        metavar="HOST:PORT",
        help="a server (default 127.0.0.1:50051); repeat it to spread the collection over several servers",
    )
    collect.add_argument("--agent", required=True)
    collect.add_argument("--input", required=True, type=Path, help="task rows (JSONL)")
    collect.add_argument("--output", required=True, type=Path)
    collect.add_argument("--limit", type=_limit, default=None, help="first N tasks; null/absent = all")
    collect.add_argument("--num-repeats", type=int, default=1)
    collect.add_argument("--concurrency", type=int, default=0, help="rollouts in flight (0 = server default)")
    collect.add_argument("--temperature", type=float)
    collect.add_argument("--top-p", type=float)
    collect.add_argument("--max-output-tokens", type=int)
    collect.add_argument("--seed", type=int)
    collect.add_argument("--resume", action="store_true", help="keep OUTPUT and collect only what is missing")
    collect.add_argument(
        "--force", action="store_true", help="--resume even when OUTPUT's manifest names a different run"
    )
    collect.add_argument(
        "--allow-failures",
        action="store_true",
        help=f"exit 0 when some rollouts failed (default: exit {EXIT_ROLLOUTS_FAILED})",
    )
    collect.add_argument("--token-env", default="GYM_GRPC_TOKEN", help="env var holding a bearer token")
    collect.add_argument("--tls-ca", type=Path, help="CA bundle to trust (turns TLS on)")
    collect.add_argument("--tls-cert", type=Path, help="client certificate (mTLS)")
    collect.add_argument("--tls-key", type=Path, help="client key (mTLS)")
    collect.add_argument("--plaintext", action="store_true", help="plaintext to a non-loopback server (explicit)")

    demo = sub.add_parser("demo", help="serve the weather tutorial on the embedded model and collect its queries")
    demo.add_argument("--config", type=Path, default=Path("configs/weather.yaml"))
    demo.add_argument("--output", type=Path, default=Path("weather_rollouts.jsonl"))
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")

    new_env = sub.add_parser("new-env", help="scaffold an environment: module, config, example data and tests")
    new_env.add_argument("name", help="the environment's name, a lowercase Python identifier")
    new_env.add_argument("--dir", type=Path, default=Path("."), help="project root to write into (default: .)")
    new_env.add_argument("--package", default="gym_grpc.environments", help="package that holds the environment")
    new_env.add_argument("--force", action="store_true", help="overwrite existing files")

    listing = sub.add_parser("list", help="list the environments (with their tools) and agents of a config or server")
    listing.add_argument("--config", type=Path, help="its environments are built here, or named for --server")
    listing.add_argument("--server", help="HOST:PORT of a running server to ask (ListTools)")
    listing.add_argument("--environment", dest="environments", action="append", default=[], metavar="NAME")
    listing.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    listing.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    listing.add_argument("--token-env", default="GYM_GRPC_TOKEN", help="env var holding a bearer token")
    listing.add_argument("--tls-ca", type=Path, help="CA bundle to trust (turns TLS on)")
    listing.add_argument("--timeout", type=float, default=10.0, help="seconds per call")

    # --- view and export (gym_grpc/cli/view.py, gym_grpc/cli/export.py: they import only what they use) ---
    from gym_grpc.cli import export, view

    view.add_parser(sub)
    export.add_parser(sub)

    # --- NeMo Gym workflow: reverify and aggregate (gym_grpc/cli/reverify.py, gym_grpc/cli/aggregate.py) ---
    from gym_grpc.cli import aggregate, reverify

    reverify.add_parser(sub)
    aggregate.add_parser(sub)
    collect.add_argument("--shard", type=_shard, metavar="I/N", help="only tasks with index %% N == I (then aggregate)")
    return parser


def _shard(value: str) -> tuple[int, int]:
    index, _, count = value.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError("expected I/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError("expected 0 <= I < N")
    return i, n


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        if args.command == "serve":
            from gym_grpc.config import load_config
            from gym_grpc.config.schema import RayServerConfig
            from gym_grpc.server.app import serve

            config = load_config(args.config, args.overrides)
            if args.ray is not None:
                ray = config.server.ray or RayServerConfig()
                config.server.ray = ray.model_copy(update={"address": args.ray or ray.address})
            if args.workers > 1:
                from gym_grpc.server.workers import serve_workers

                asyncio.run(serve_workers(config, args.config, args.overrides, args.workers, args.host, args.port))
            else:
                asyncio.run(serve(config, args.host, args.port))
        elif args.command == "collect":
            return _collect(args)
        elif args.command == "demo":
            from gym_grpc.cli.demo import run_demo

            return run_demo(args.config, args.output, args.overrides)
        elif args.command == "new-env":
            from gym_grpc.cli.new_env import run_new_env

            return run_new_env(args.name, args.dir, args.package, args.force)
        elif args.command == "list":
            return _list(args)
        elif args.command == "view":
            from gym_grpc.cli.view import run_view

            return run_view(args)
        elif args.command == "export":
            from gym_grpc.cli.export import run_export

            return run_export(args)
        elif args.command == "reverify":
            from gym_grpc.cli.reverify import run_reverify

            return run_reverify(args)
        elif args.command == "aggregate":
            from gym_grpc.cli.aggregate import run_aggregate

            return run_aggregate(args)
    except GymError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from pydantic import ValidationError  # imported here: `collect` starts without pydantic

        if not isinstance(exc, ValidationError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _collect(args: argparse.Namespace) -> int:
    from gym_grpc.cli.collect import collect
    from gym_grpc.tls import tls_credentials

    sampling = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_output_tokens": args.max_output_tokens,
        "seed": args.seed,
    }
    credentials = None
    if args.tls_ca or args.tls_cert:
        credentials = tls_credentials(args.tls_ca, args.tls_cert, args.tls_key)
    servers = args.servers or ["127.0.0.1:50051"]
    remote = [s for s in servers if not _loopback_target(s)]
    if credentials is None and remote and not args.plaintext:
        print(f"error: {remote[0]} is not loopback: pass --tls-ca (TLS) or --plaintext", file=sys.stderr)
        return 2
    report = asyncio.run(
        collect(
            server=servers,
            agent=args.agent,
            input_path=args.input,
            output=args.output,
            limit=args.limit,
            num_repeats=args.num_repeats,
            concurrency=args.concurrency,
            sampling=sampling,
            resume=args.resume,
            force=args.force,
            shard=args.shard,
            token=os.environ.get(args.token_env),
            credentials=credentials,
        )
    )
    for line in report.lines(args.output):
        print(line, file=sys.stderr if report.failed and "failed" in line else sys.stdout)
    return EXIT_ROLLOUTS_FAILED if report.failed and not args.allow_failures else 0


def _list(args: argparse.Namespace) -> int:
    from gym_grpc.cli.list_cmd import run_list
    from gym_grpc.client import tls_credentials

    return run_list(
        config_path=args.config,
        server=args.server,
        environments=args.environments,
        overrides=args.overrides,
        as_json=args.json,
        token=os.environ.get(args.token_env),
        credentials=tls_credentials(args.tls_ca) if args.tls_ca else None,
        timeout=args.timeout,
    )


def _loopback_target(target: str) -> bool:
    host = target.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


if __name__ == "__main__":
    sys.exit(main())
