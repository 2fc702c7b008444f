"""Command line of the benchmarks: ``python -m benchmarks SUITE [--quick] [--out DIR]``.

``python -m benchmarks plots`` draws the PNG figures of ``docs/img/`` and
``python -m benchmarks tables`` prints the Markdown tables, both from the published JSON
results in ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time

from benchmarks import SUITES
from benchmarks.common import load_average, out_dir, write_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=(*SUITES, "plots", "tables"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI; writes to --out or a temp folder")
    parser.add_argument("--out", help="output folder (default: benchmarks/results for full runs)")
    parser.add_argument("--seeds", type=int, help="seeds for efficiency/retrain (default 5 / 3)")
    parser.add_argument("--ablation-seeds", type=int, help="seeds of the efficiency ablations (default 3)")
    parser.add_argument("--datasets", default="demo,spam", help="efficiency: comma-separated tasks")
    parser.add_argument("--finetune", action="store_true", help="efficiency: also run encoder fine-tuning")
    parser.add_argument("--finetune-only", action="store_true",
                        help="efficiency: run only the encoder fine-tuning curve")
    parser.add_argument("--budgets", help="efficiency: comma-separated label budgets (default 50,100,200,400,600)")
    parser.add_argument("--finetune-layers", type=int, default=6, help="fine-tuning: top encoder layers to tune")
    parser.add_argument("--encoder-lr", type=float, default=5e-5, help="fine-tuning: learning rate of those layers")
    parser.add_argument("--finetune-epochs", type=int, default=8, help="fine-tuning: maximum epochs")
    parser.add_argument("--finetune-batch-size", type=int, default=16, help="fine-tuning: texts per step")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.suite == "plots":
        from benchmarks.plots import draw_all

        for path in draw_all():
            print(path)
        return 0
    if args.suite == "tables":
        from benchmarks.tables import markdown

        print(markdown())
        return 0
    module = importlib.import_module(f"benchmarks.{args.suite}")
    folder = out_dir(args.quick, args.out)
    name = args.suite
    if args.suite == "efficiency" and args.datasets != "demo,spam":
        name = "efficiency-" + args.datasets.replace(",", "-")  # one file per task when split
    if args.suite == "efficiency" and args.finetune_only:
        name = name.replace("efficiency", "finetune", 1) + f"-top{args.finetune_layers}"
    partial = folder / f"{name}.partial.tmp"
    load = load_average()
    started = time.perf_counter()
    result = module.run(quick=args.quick, seeds=args.seeds, ablation_seeds=args.ablation_seeds,
                        datasets=tuple(args.datasets.split(",")), finetune=args.finetune,
                        finetune_only=args.finetune_only,
                        budgets=[int(b) for b in args.budgets.split(",")] if args.budgets else None,
                        finetune_options={"layers": args.finetune_layers, "encoder_lr": args.encoder_lr,
                                          "epochs": args.finetune_epochs, "batch_size": args.finetune_batch_size},
                        on_progress=lambda info: print(info, file=sys.stderr, flush=True),
                        checkpoint=lambda res: partial.write_text(json.dumps(res, default=str)))
    path = write_result(name, result, folder=folder, quick=args.quick,
                        load_before=load, seconds=time.perf_counter() - started)
    partial.unlink(missing_ok=True)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
