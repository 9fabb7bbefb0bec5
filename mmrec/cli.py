"""The ``mmrec`` command line.

Commands mirror the data flow, each a thin layer over the Python API:

    mmrec data describe --dataset movielens-100k [--json]
    mmrec data prepare  --dataset shop --out prepared/shop [--config mmrec.toml]

``--dataset`` takes a built-in name (movielens-100k, shop) or a data folder.
``--config`` reads a TOML file whose ``[data]`` table maps onto
:class:`mmrec.config.DataConfig`; unknown keys are refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tomllib
from pathlib import Path

import mmrec  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from mmrec.config import DataConfig
from mmrec.data.problems import DataError


def read_config(path: str | None) -> DataConfig:
    """The ``[data]`` table of a TOML file as a DataConfig (defaults without a file)."""
    if path is None:
        return DataConfig()
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SystemExit(f"mmrec: cannot read config {path}: {error}") from error
    unknown = sorted(set(document) - {"data", "model", "train"})
    if unknown:
        raise SystemExit(f"mmrec: {path}: unknown table(s) {unknown}; known: data, model, train")
    try:
        return DataConfig.from_dict(document.get("data", {}))
    except (TypeError, ValueError) as error:
        raise SystemExit(f"mmrec: {path}: {error}") from error


def load(args: argparse.Namespace, config: DataConfig):
    return mmrec.load_dataset(args.dataset, image_size=config.image_size,
                              image_channels=config.image_channels)


def with_split_options(config: DataConfig, args: argparse.Namespace) -> DataConfig:
    import dataclasses
    changes = {}
    if args.split is not None:
        changes["scheme"] = args.split
    if args.split_file is not None:
        changes["split_file"] = args.split_file
    if args.cold_item_share is not None:
        changes["cold_item_share"] = args.cold_item_share
    if not changes:
        return config
    return dataclasses.replace(config, split=dataclasses.replace(config.split, **changes))


def cmd_data_describe(args: argparse.Namespace) -> int:
    from mmrec.data.describe import describe, format_description
    config = with_split_options(read_config(args.config), args)
    summary = describe(load(args, config), config.split)
    print(json.dumps(summary, indent=2) if args.json else format_description(summary))
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    import numpy as np

    from mmrec.data.describe import describe
    from mmrec.data.splits import make_split
    from mmrec.features.item_features import prepare_item_features
    config = with_split_options(read_config(args.config), args)
    dataset = load(args, config)
    out = Path(args.out)
    features = prepare_item_features(dataset.catalogue, config, use_cache=not args.no_cache)
    features.save(out / "item_features")
    split = make_split(dataset, config.split)
    np.savez(out / "split.npz", train=split.train, valid=split.valid, test=split.test,
             cold_items=split.cold_items)
    summary = describe(dataset, config.split)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"prepared {summary['items']:,} items ({len(features.vocabulary):,}-token vocabulary, "
          f"key {features.key}) and a {split.scheme} split into {out}")
    return 0


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True,
                        help="movielens-100k, shop, or a data folder (see docs/DATA.md)")
    parser.add_argument("--config", help="TOML file with a [data] table")
    parser.add_argument("--split", choices=["auto", "leave_one_out", "time", "explicit"],
                        help="split scheme (default: the config's, auto)")
    parser.add_argument("--split-file", help="CSV user_id,item_id,timestamp,split")
    parser.add_argument("--cold-item-share", type=float,
                        help="share of items held out of training entirely")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmrec", description=__doc__.split("\n")[0])
    parser.add_argument("--verbose", "-v", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="load, check and prepare data sets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    describe = data_commands.add_parser("describe", help="sizes, coverage, splits, problems")
    add_dataset_options(describe)
    describe.add_argument("--json", action="store_true", help="print JSON")
    describe.set_defaults(run=cmd_data_describe)
    prepare = data_commands.add_parser("prepare", help="write item features and the split")
    add_dataset_options(prepare)
    prepare.add_argument("--out", required=True, help="folder to write")
    prepare.add_argument("--no-cache", action="store_true", help="rebuild item features")
    prepare.set_defaults(run=cmd_data_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="mmrec: %(message)s", stream=sys.stderr)
    try:
        return args.run(args)
    except DataError as error:
        print(f"mmrec: data error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"mmrec: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
