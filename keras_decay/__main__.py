"""`python -m keras_decay compare ...`: the same as `keras-decay compare`.

The package import runs first (Keras with it); `keras-decay` is the fast
way to `--help` and argument errors.
"""

import sys

from keras_decay_cli import main

if __name__ == "__main__":
    sys.exit(main())
