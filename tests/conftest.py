"""Shared test set-up: quiet TensorFlow, a clean Keras session per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _clear_keras_session():
    keras.backend.clear_session()
    keras.config.set_dtype_policy("float32")
    yield
    keras.backend.clear_session()
    keras.config.set_dtype_policy("float32")
