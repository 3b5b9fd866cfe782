"""Knowledge distillation for pruning's fine-tuning: the unpruned model teaches the pruned one.

Called by ``components.prune`` when its spec has ``distill``. The pruned model learns from
the labels and from the teacher's softened outputs (Hinton et al. 2015, "Distilling the
Knowledge in a Neural Network"): the teacher's whole distribution says which wrong classes
are near misses, which one-hot labels do not, and a model that lost half its channels
relearns from it faster than from labels alone.

The teacher runs inside the tf.data pipeline, so it sees each batch exactly as the student
does (shuffled, augmented), and its probabilities travel in the targets: each target row is
``[label, p_1 .. p_k]``. The loss and the accuracy metric read that packing, so
``train.fit`` stays the one training loop. The project's models end in a softmax, so logits
are taken as log-probabilities (equal to the logits up to a constant per row, which a
softmax ignores).
"""

from __future__ import annotations

EPSILON = 1e-7  # keeps log() finite on a saturated softmax


def with_teacher(dataset, teacher):
    """``dataset`` of (x, label) batches as (x, [label, teacher's probabilities])."""
    import tensorflow as tf

    def pack(x, y):
        probabilities = tf.cast(teacher(x, training=False), tf.float32)
        return x, tf.concat([tf.cast(y, tf.float32)[:, tf.newaxis], probabilities], axis=1)

    return dataset.map(pack, num_parallel_calls=tf.data.AUTOTUNE)


def loss(temperature: float, alpha: float):
    """``(1 - alpha)`` x cross-entropy with the labels + ``alpha`` x ``temperature**2`` x
    the KL divergence of the softened student from the softened teacher (the squared
    temperature keeps the soft term's gradients on the scale of the hard one's, as Hinton
    et al. do). The KL term is 0 when the student matches the teacher, so the loss reads
    on the labels' scale and early stopping sees its changes."""
    import keras
    from keras import ops

    def distillation_loss(y_true, y_pred):
        labels = ops.cast(y_true[:, 0], "int32")
        hard = keras.losses.sparse_categorical_crossentropy(labels, y_pred)
        teacher = ops.log_softmax(_logits(y_true[:, 1:]) / temperature, axis=-1)
        student = ops.log_softmax(_logits(y_pred) / temperature, axis=-1)
        soft = ops.sum(ops.exp(teacher) * (teacher - student), axis=-1) * temperature**2
        return (1.0 - alpha) * hard + alpha * soft

    return distillation_loss


def accuracy(y_true, y_pred):
    """The student's accuracy on the labels of packed targets (logged as ``accuracy``)."""
    import keras

    return keras.metrics.sparse_categorical_accuracy(y_true[:, 0], y_pred)


def _logits(probabilities):
    from keras import ops

    return ops.log(ops.clip(probabilities, EPSILON, 1.0))
