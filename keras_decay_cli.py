"""Entry point of the `keras-decay` command (see `keras_decay.cli`).

`import keras_decay` imports Keras (and TensorFlow) to register every class
for `keras.saving.load_model`. Importing this module first tells the package
to defer that to first use, so that `keras-decay --help` and argument errors
answer in well under a second; the command imports what it runs.
"""


def main(argv=None):
    """Runs the `keras-decay` command; returns the exit status."""
    from keras_decay import cli

    return cli.main(argv)
