"""`python -m keras_decay compare ...`: the same as `keras-decay compare`."""

import sys

from keras_decay.cli import main

if __name__ == "__main__":
    sys.exit(main())
