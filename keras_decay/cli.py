"""The `keras-decay` command, under its 0.1 name: see `keras_decay_cli`.

The parser and the option declarations live in the top-level package
`keras_decay_cli`, which does not import Keras; this alias is kept for code
that calls `keras_decay.cli.main([...])`.
"""

from keras_decay_cli import build_parser
from keras_decay_cli import main

__all__ = ["build_parser", "main"]
