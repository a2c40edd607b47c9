"""Shared fixtures: tiny offline data and small trained models (CPU, seconds)."""

import numpy as np
import pytest
import torch

import dalv
from dalv.config import ExperimentConfig, TrainConfig

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits():
    return dalv.data.load("digits")


@pytest.fixture(scope="session")
def trained_mlp(digits):
    """An MLP-32 trained on 300 digits (about 0.85 test accuracy)."""
    model = dalv.models.build(
        dalv.ModelConfig(hidden=32), digits.input_shape, 10, seed=0
    )
    dalv.train.fit(
        model,
        digits.x_train[:300],
        digits.y_train[:300],
        TrainConfig(epochs=10),
        seed=0,
    )
    return model


@pytest.fixture
def small_cfg():
    return ExperimentConfig(
        dataset="digits",
        n_initial=20,
        budget=10,
        n_cycles=3,
        candidates=200,
        train=TrainConfig(epochs=2),
    )


@pytest.fixture
def pool(digits):
    p = dalv.data.ActivePool(digits.x_train, digits.y_train)
    p.label(np.arange(0, 40, 2), round=0)
    return p


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for modules of tiny tensor ops (far faster on a shared
    machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
