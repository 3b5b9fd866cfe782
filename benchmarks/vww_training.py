"""How fast each architecture learns the generated person-detection task, epoch by epoch.

    python benchmarks/vww_training.py [configs/vww.yaml] [--set key=value ...]
        [--architecture mobilenet_v1 --architecture mcunet ...] [--epochs 8]

The default VWW job's held-out accuracy is far below its 90% target; this separates the two
reasons it could be. For each architecture it trains on the config's examples (the data
front of ``pipelines.vww``, cached as in a run) with the run's optimiser (Adam at
``train.learning_rate``, batch ``train.batch_size``) but no augmentation or early stopping,
and prints per epoch the accuracy on the training batches as they were fitted (``fit``:
does it learn at all?) and on the held-out test split (``test``: does what it learnt carry
over to unseen backgrounds and figure styles?), with the wall time. An architecture may
carry builder options, e.g. ``--architecture plain_cnn:filters=16``; the config's
``train.model`` applies to ``train.architecture`` itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARCHITECTURES = ("mobilenet_v1", "mcunet", "plain_cnn", "plain_cnn:filters=16")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "vww.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--architecture", action="append", dest="architectures")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.WARNING)

    sys.path.insert(0, str(REPO))
    from benchmarks.chain_report import print_table
    from pipelines import config, vww

    cfg = config.load(args.config, args.overrides)
    examples = vww.data_front(cfg, progress=False)
    print(f"{examples.counts['train']} training / {examples.counts['test']} held-out scenes")
    for architecture in args.architectures or DEFAULT_ARCHITECTURES:
        print(f"\n{architecture}")
        print_table(_curve(architecture, examples, cfg.train, args.epochs))
    return 0


def _curve(architecture: str, examples, spec, epochs: int) -> list[tuple[str, str]]:
    import keras
    import yaml

    from components import example_records, models

    keras.utils.set_random_seed(spec.seed)
    train = example_records.dataset(examples, "train", spec.batch_size, shuffle=True,
                                    seed=spec.seed, pair_by_name=spec.pair_batches)  # fmt: skip
    test = example_records.dataset(examples, "test", spec.batch_size)
    name, _, given = architecture.partition(":")
    options = dict(spec.model) if name == spec.architecture else {}
    options.update(
        (k, yaml.safe_load(v)) for k, v in (o.split("=", 1) for o in given.split(",") if o)
    )
    model = models.build(name, examples.example_shape, len(examples.labels), options)
    model.compile(optimizer=keras.optimizers.Adam(spec.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    rows, start = [("parameters", f"{model.count_params():,}")], time.monotonic()
    for epoch in range(1, epochs + 1):
        fitted = model.fit(train, epochs=1, verbose=0).history["accuracy"][0]
        held_out = model.evaluate(test, verbose=0)[1]
        seconds = time.monotonic() - start
        rows.append((f"epoch {epoch}: fit / test accuracy, seconds",
                     f"{fitted:.3f} / {held_out:.3f}, {seconds:.0f} s"))  # fmt: skip
    return rows


if __name__ == "__main__":
    sys.exit(main())
