"""`gym-grpc export sft|dpo|tokens`: rollout JSONL -> training data (see gym_grpc/export)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    export = sub.add_parser("export", help="turn rollouts into training data: sft, dpo or tokens")
    kinds = export.add_subparsers(dest="kind", required=True)
    sft = kinds.add_parser("sft", help="chat records (messages + tools) of rollouts with reward >= --min-reward")
    sft.add_argument("--min-reward", type=float, default=1.0)
    sft.add_argument("--best-per-group", action="store_true", help="only the highest-reward rollout of each group")
    dpo = kinds.add_parser("dpo", help="prompt/chosen/rejected pairs: best vs worst of each group")
    dpo.add_argument("--margin", type=float, default=0.5, help="least reward difference of a pair")
    kinds.add_parser("tokens", help="token ids, loss mask, log-probs, reward, advantage (JSONL or .parquet)")
    for parser in kinds.choices.values():
        parser.add_argument("rollouts", nargs="+", type=Path, help="rollout JSONL files")
        parser.add_argument("--output", "-o", required=True, type=Path, help="JSONL (tokens: .parquet for Parquet)")


def run_export(args: argparse.Namespace) -> int:
    from gym_grpc.export.common import Report, write_jsonl
    from gym_grpc.viewer.rows import read_rows, with_failures

    missing = [p for p in args.rollouts if not p.exists()]
    if missing:
        print(f"error: {missing[0]}: no such file", file=sys.stderr)
        return 2
    rows = list(read_rows(with_failures(args.rollouts)))
    report = Report()
    if args.kind == "sft":
        from gym_grpc.export.sft import sft_records

        records = sft_records(rows, report, min_reward=args.min_reward, best_per_group=args.best_per_group)
    elif args.kind == "dpo":
        from gym_grpc.export.dpo import dpo_records

        records = dpo_records(rows, report, margin=args.margin)
    else:
        from gym_grpc.export.tokens import token_records, write_parquet

        records = token_records(rows, report)
        if args.output.suffix == ".parquet":
            write_parquet(args.output, records)
            print("\n".join(report.lines(args.output)), file=sys.stderr)
            return 0
    write_jsonl(args.output, records)
    print("\n".join(report.lines(args.output)), file=sys.stderr)
    return 0
