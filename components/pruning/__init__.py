"""Structured channel pruning of Keras 3 functional models, one concern per module.

``components.prune`` (the component) drives these passes in order: ``dependency.analyse``
(which channels must go together), ``ranking.unit_scores`` and ``ranking.select`` (which
go), ``surgery.shrink`` (the smaller model, weights copied) and, for budgets,
``budgets.search`` over ``budgets.measure`` (int8 flash and TFLM arena) or
``budgets.keras_macs``. ``graph.layer_calls`` reads the functional graph for all of them.
The modules import Keras at import time; the component imports them only when it runs.
"""
