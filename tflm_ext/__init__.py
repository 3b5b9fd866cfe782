"""TFLite Micro graph tooling: run, measure, plan and rewrite int8 .tflite models.

Knows .tflite flatbuffers and the tflite-micro wheel's interpreter; knows nothing of
pipelines, Beam or MLflow. Never imports TensorFlow.
"""

from tflm_ext.arena import ArenaMeasurement, measure_arena
from tflm_ext.c_array import write_c_array
from tflm_ext.errors import TflmExtError
from tflm_ext.firmware_export import FirmwareBundle, export_firmware
from tflm_ext.graph_stats import GraphStats, OpStats, graph_stats
from tflm_ext.inference import BatchResult, TensorDetails, input_details, run_batch
from tflm_ext.interpreter import make_interpreter
from tflm_ext.isolation import run_isolated
from tflm_ext.memory_profile import MemoryProfile, OpMemory, profile
from tflm_ext.op_registerer import OpRegisterer
from tflm_ext.planner import PatchPlan, PlannerSpec, StagePlan, plan
from tflm_ext.rewrite import VerifyReport, rewrite_stage, verify

__all__ = [
    "ArenaMeasurement",
    "BatchResult",
    "FirmwareBundle",
    "GraphStats",
    "MemoryProfile",
    "OpMemory",
    "PatchPlan",
    "PlannerSpec",
    "StagePlan",
    "VerifyReport",
    "OpRegisterer",
    "OpStats",
    "TensorDetails",
    "TflmExtError",
    "export_firmware",
    "graph_stats",
    "input_details",
    "make_interpreter",
    "measure_arena",
    "plan",
    "profile",
    "rewrite_stage",
    "run_batch",
    "run_isolated",
    "verify",
    "write_c_array",
]
