"""`python -m keras_decay compare ...`: the same as `keras-decay compare`."""

import sys

from keras_decay.cli import main

sys.exit(main())
