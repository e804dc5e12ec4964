"""The `keras-decay` command (also `python -m keras_decay`).

    keras-decay compare [--epochs 20] [--batch-size 32] [--lr 0.1]
                        [--weight-decay 5e-4] [--dropout 0.5]
                        [--lr-schedule none|exponential|step] [--momentum 0]
                        [--runs plain,l2,l2_dropout] [--seed 1]
                        [--logdir logs/compare-<timestamp>]
                        [--dataset digits|mnist|fashion_mnist|cifar10]
                        [--train-fraction 0.5] [--quiet]

An invalid value ends the command with exit status 2 and one line on stderr
that names the option; a failure the user can fix (a missing extra, an
offline download) with exit status 1 and one line.
"""

import argparse
import os
import sys

from keras_decay import _validation

_RUN_NAMES = ("plain", "l2", "l2_dropout")
_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
_LR_SCHEDULES = ("none", "exponential", "step")


class _Parser(argparse.ArgumentParser):
    """Reports a usage error in one line (no usage dump), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: x)` except for `None` / `False` defaults."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _option(parse, check, name, **kwargs):
    """An argparse `type=` that parses the text, then applies `check`."""

    def convert(text):
        try:
            value = parse(text)
        except ValueError:
            value = text  # `check` rejects the raw text in its own words.
        try:
            return check(value, name, **kwargs)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = name  # argparse names the type in some messages.
    return convert


def _number(text):
    try:
        return int(text)
    except ValueError:
        return float(text)


def _runs(text):
    from keras_decay.compare import check_runs

    try:
        return check_runs(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_compare_parser(subparsers):
    parser = subparsers.add_parser(
        "compare",
        help="train one CNN plain, with L2 and with L2+dropout; compare",
        description=(
            "Train the same small CNN three times (plain, l2, l2_dropout) "
            "with the same initial weights and batches, then write "
            "results.json, comparison.png and one folder per run into "
            "--logdir, and print the results table."
        ),
        formatter_class=_Formatter,
    )
    positive_int = _validation.check_positive_int
    parser.add_argument(
        "--epochs",
        type=_option(_number, positive_int, "epochs"),
        default=20,
        help="epochs per run",
    )
    parser.add_argument(
        "--batch-size",
        type=_option(_number, positive_int, "batch_size"),
        default=32,
        help="mini-batch size",
    )
    parser.add_argument(
        "--lr",
        type=_option(float, _validation.check_positive_float, "lr"),
        default=0.1,
        help="SGD learning rate (initial rate with a schedule)",
    )
    parser.add_argument(
        "--weight-decay",
        type=_option(
            float, _validation.check_non_negative_float, "weight_decay"
        ),
        default=5e-4,
        help="WeightDecay rate on kernels (penalty rate/2*sum(w**2)) "
        "in the l2 and l2_dropout runs",
    )
    parser.add_argument(
        "--dropout",
        type=_option(
            float,
            _validation.check_float,
            "dropout",
            low=0.0,
            high=1.0,
            high_inclusive=False,
        ),
        default=0.5,
        help="dropout rate before the classifier in the l2_dropout run",
    )
    parser.add_argument(
        "--lr-schedule",
        choices=_LR_SCHEDULES,
        default="none",
        help="exponential: x0.9 per epoch; step: halved every 5 epochs",
    )
    parser.add_argument(
        "--momentum",
        type=_option(
            float,
            _validation.check_float,
            "momentum",
            low=0.0,
            high=1.0,
            high_inclusive=False,
        ),
        default=0.0,
        help="SGD momentum",
    )
    parser.add_argument(
        "--runs",
        type=_runs,
        default=",".join(_RUN_NAMES),
        help="comma-separated subset of " + ",".join(_RUN_NAMES),
    )
    parser.add_argument(
        "--seed",
        type=_option(_number, _validation.check_int, "seed", low=0),
        default=1,
        help="seed of the initial weights, batch order, dropout masks "
        "and validation split",
    )
    parser.add_argument(
        "--logdir",
        default=None,
        help="output folder (default: logs/compare-<timestamp>)",
    )
    parser.add_argument(
        "--dataset",
        choices=_DATASETS,
        default="digits",
        help="digits is bundled with scikit-learn; the others are "
        "downloaded by keras.datasets (needs internet the first time)",
    )
    parser.add_argument(
        "--train-fraction",
        type=_option(
            float,
            _validation.check_float,
            "train_fraction",
            low=0.0,
            high=1.0,
            low_inclusive=False,
        ),
        default=0.5,
        help="stratified share of the training split used for training "
        "(small, so that the plain model over-fits)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print only errors",
    )
    parser.set_defaults(handler=_run_compare)
    return parser


def build_parser():
    """The `keras-decay` argument parser."""
    parser = _Parser(
        prog="keras-decay",
        description="keras_decay command line tools.",
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    subparsers.required = True
    _add_compare_parser(subparsers)
    return parser


def _run_compare(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_decay import compare

    options = compare.CompareOptions(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        dropout=args.dropout,
        lr_schedule=args.lr_schedule,
        momentum=args.momentum,
        runs=args.runs,
        seed=args.seed,
        logdir=args.logdir,
        dataset=args.dataset,
        train_fraction=args.train_fraction,
        quiet=args.quiet,
    )
    try:
        compare.run_comparison(options)
    except compare.CompareError as error:
        print(f"keras-decay compare: error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    """Runs the `keras-decay` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
