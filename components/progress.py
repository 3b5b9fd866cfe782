"""Progress bars for long steps (tqdm), shared by the components that need one."""

from __future__ import annotations

import keras
from tqdm.auto import tqdm


class EpochProgress(keras.callbacks.Callback):
    """One tqdm bar over the epochs of ``Model.fit``, with the latest metrics beside it.

    Keras' own per-batch bar floods logs of scheduled runs; one line per job is enough.
    """

    def __init__(self, epochs: int, enabled: bool = True):
        super().__init__()
        self._epochs = epochs
        self._enabled = enabled
        self._bar: tqdm | None = None

    def on_train_begin(self, logs=None):
        self._bar = tqdm(total=self._epochs, desc="train", unit="epoch", disable=not self._enabled)

    def on_epoch_end(self, epoch, logs=None):
        shown = {k: f"{v:.3f}" for k, v in (logs or {}).items() if "acc" in k or "loss" in k}
        self._bar.set_postfix(shown)
        self._bar.update(1)

    def on_train_end(self, logs=None):
        self._bar.close()
