"""The `keras-decay` parsers, built from the declared options; `main`.

The options are declared once, in `keras_decay_cli.options`; this module
only builds the parsers from them and dispatches. `--help` and argument
errors import neither Keras nor TensorFlow nor the `keras_decay` package.
An invalid value ends the command with exit status 2 and one line on stderr
naming the option; a failure the user can fix (a missing extra, an offline
download, an unusable log folder or storage) with exit status 1 and one
line.
"""

import argparse
import importlib.util
import os
import signal
import sys
import threading

from keras_decay_cli import options as options_lib

_DESCRIPTIONS = {
    "compare": (
        "train one small CNN plain, with L2 and with L2+dropout",
        "Train the same CNN once per run and seed (same initial weights and "
        "batches on a seed), on digits with 30 % of the training labels "
        "flipped, then print mean ± sd over the seeds and write "
        "results.json, comparison.png and one TensorBoard run per run and "
        "seed into --logdir.",
    ),
    "sweep": (
        "train over a grid or range of weight decays; find the best",
        "Train one trial per weight decay, dropout and seed through an "
        "Optuna study (a journal file in --logdir, or --storage shared by "
        "several machines); rerunning resumes. Prints mean ± sd per weight "
        "decay, the best one, and writes results.json and sweep.png.",
    ),
}
_BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


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


def _converter(option):
    """An argparse `type=`: parse the text, then the option's check."""

    def convert(text):
        try:
            return option.validate(option.parse(text))
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = option.name  # argparse names the type in messages.
    return convert


def _default_text(value):
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _add_command(subparsers, command, handler):
    summary, description = _DESCRIPTIONS[command]
    parser = subparsers.add_parser(
        command,
        help=summary,
        description=description,
        formatter_class=_Formatter,
    )
    for option in options_lib.options_for(command):
        if option.flag:
            parser.add_argument(
                option.flag_name, action="store_true", help=option.help
            )
            continue
        parser.add_argument(
            option.flag_name,
            type=_converter(option),
            default=argparse.SUPPRESS,
            metavar=option.metavar,
            help=option.help
            + (
                ""
                if option.default is None
                else f" (default: {_default_text(option.default)})"
            ),
        )
    parser.set_defaults(handler=handler, command=command)


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
    _add_command(subparsers, "compare", _run)
    _add_command(subparsers, "sweep", _run)
    return parser


def _check_backend():
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    module = _BACKENDS.get(backend)
    if module is None or importlib.util.find_spec(module) is None:
        return (
            f"KERAS_BACKEND={backend!r} is not usable here: the experiment "
            f"runs on {', '.join(_BACKENDS)} (installed: "
            f"{', '.join(m for m in _BACKENDS if importlib.util.find_spec(m))})"
        )
    return None


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so that it stops its workers
    (as on Ctrl-C) instead of leaving them behind."""


def _terminate(signum, frame):
    from keras_decay.experiment.worker import request_stop

    request_stop()  # Also when the exception is swallowed (a destructor).
    raise _Terminated


def _run(args):
    from keras_decay.experiment.data import ExperimentError

    command = args.command
    values = {
        k: v for k, v in vars(args).items() if k not in ("handler", "command")
    }
    prefix = f"keras-decay {command}: error:"
    problem = _check_backend()
    if problem:
        print(f"{prefix} {problem}", file=sys.stderr)
        return 1
    try:
        config = options_lib.settings(command, **values)
        if command == "compare":
            from keras_decay.experiment import compare as module
        else:
            from keras_decay.experiment import sweep as module
        from keras_decay.experiment.worker import request_stop
        from keras_decay.experiment.worker import say_line

        request_stop(False)
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            module.run(config, say=say_line)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    except (TypeError, ValueError) as error:
        print(f"{prefix} {error}", file=sys.stderr)
        return 2
    except ExperimentError as error:
        print(f"{prefix} {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a write the experiment did not expect
        from keras_decay.experiment.engine import write_error

        print(f"{prefix} {write_error(error)}", file=sys.stderr)
        return 1
    except _Terminated:
        print(
            f"keras-decay {command}: terminated (SIGTERM); its workers were "
            "stopped, and a rerun trains what is left",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"keras-decay {command}: interrupted", file=sys.stderr)
        return 130
    return 0


def main(argv=None):
    """Runs the `keras-decay` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args)
