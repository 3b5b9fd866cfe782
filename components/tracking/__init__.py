"""Tracking: MLflow run logging, the ``tflm`` model flavor, and the plots they log."""
