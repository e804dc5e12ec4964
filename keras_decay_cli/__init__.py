"""The `keras-decay` command: its parser and its option declarations.

    keras-decay compare [options]   # plain vs L2 vs dropout, several seeds
    keras-decay sweep [options]     # the weight decay chosen by training

A package of its own, beside `keras_decay`: `import keras_decay` imports
Keras and registers every class (what `keras.saving.load_model` needs),
always; this package imports neither, so `--help` and argument errors
answer in well under a second. Only a command that trains imports the
experiment (`keras_decay.experiment`), and with it the library and Keras.
`python -m keras_decay` gives the same answers, after the package import.

| module    | job                                                       |
| --------- | --------------------------------------------------------- |
| `options` | every option, declared once (help, default, check), and   |
|           | the immutable `Settings` of a command                     |
| `parser`  | the argparse parsers built from them; `main`              |
"""

from keras_decay_cli.parser import build_parser
from keras_decay_cli.parser import main

__all__ = ["build_parser", "main"]
