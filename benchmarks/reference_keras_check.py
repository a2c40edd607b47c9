"""Cross-check dalv's training against the reference code's own, in TensorFlow.

    python -m venv .venv-tf && .venv-tf/bin/pip install "tensorflow-cpu==2.15.*"
    .venv-tf/bin/python benchmarks/reference_keras_check.py HIDDEN [MNIST_RAW_DIR]

Re-implements, in Keras 2 (TensorFlow 2.15, the framework the reference code was
written for), the path the reference code takes for Random on MNIST: 50 random initial
rows, a Dense(h, relu) → Dense(10, no bias) model compiled with Adam and sparse
cross-entropy on logits, 10 epochs of batch 32, saved as a SavedModel; then, each cycle,
50 more random rows, the saved model loaded back, compiled with a fresh Adam and fitted
for 10 epochs on every acquired row (the initial rows left out), and evaluated on the
10,000 test images. Prints the test accuracy of cycles 0-3 for seeds 0-4 and their mean,
to set beside dalv's (``python -m dalv run --dataset mnist --hidden H --method Random
--seeds 0-4 --cycles 4``) and the paper's published curve. TensorFlow is not a dalv
dependency; run this in its own environment. The record is
``reports/benchmarks/fidelity_keras.txt``.
"""

import gzip
import os
import sys
import tempfile

import numpy as np

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
from keras.layers import Dense

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)


def idx(p):
    d = gzip.open(p).read()
    n = d[3]
    return np.frombuffer(d, np.uint8, offset=4 + 4 * n).reshape(
        np.frombuffer(d, ">i4", n, 4)
    )


R = (sys.argv[2] if len(sys.argv) > 2 else "data/MNIST/raw").rstrip("/") + "/"
xtr = (
    idx(R + "train-images-idx3-ubyte.gz").astype(np.float32).reshape(60000, -1) / 255.0
)
ytr = idx(R + "train-labels-idx1-ubyte.gz")
xte = idx(R + "t10k-images-idx3-ubyte.gz").astype(np.float32).reshape(10000, -1) / 255.0
yte = idx(R + "t10k-labels-idx1-ubyte.gz")
h = int(sys.argv[1])
cycles = 4
tmp = tempfile.mkdtemp()
res = []
for seed in range(5):
    np.random.seed(seed)
    sel = np.random.choice(len(ytr), size=50, replace=False)
    xl, yl = xtr[sel], ytr[sel].squeeze()
    xu, yu = np.delete(xtr, sel, axis=0), np.delete(ytr, sel).squeeze()
    model = tf.keras.models.Sequential()
    model.add(Dense(units=h, input_shape=(784,), activation="relu"))
    model.add(Dense(units=10, activation=None, use_bias=False))
    model.compile(
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=tf.keras.optimizers.Adam(),
        metrics=["accuracy"],
    )
    model.fit(x=xl, y=yl, validation_data=(xte, yte), epochs=10, verbose=0)
    path = os.path.join(tmp, f"init_{seed}")
    model.save(path, save_format="tf")
    unl = np.arange(len(yu))
    lab = None
    accs = []
    for _ in range(cycles):
        pick = np.random.choice(unl, size=50, replace=False)
        unl = np.setdiff1d(unl, pick)
        lab = pick if lab is None else np.concatenate((lab, pick))
        m = tf.keras.models.load_model(path)
        m.compile(
            optimizer=tf.keras.optimizers.Adam(learning_rate=0.001),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        m.fit(x=xu[lab], y=yu[lab], validation_data=(xte, yte), epochs=10, verbose=0)
        accs.append(m.evaluate(xte, yte, verbose=0)[1])
    res.append(accs)
    print(seed, np.round(accs, 3), flush=True)
print("mean", np.round(np.mean(res, 0), 3))
