// TFLM_EXT_PATCH_STAGE for firmware built with a TFLM source tree.
//
// Add kernels/patch_stage.cc, kernels/inner_ops.cc and kernels/tflm/patch_stage_op.cc to the
// firmware build (with kernels/ on the include path), then register the op next to the builtins:
//
//   #include "tflm/patch_stage_op.h"
//   static tflite::MicroMutableOpResolver<N + 1> op_resolver;
//   op_resolver.AddCustom(tflm_ext::patch_stage::kOpName,
//                         tflm_ext::Register_TFLM_EXT_PATCH_STAGE());
//
// Size the arena with tflm_ext's measurement of the rewritten model: the op requests its
// scratch (tile windows, or streaming rings) in Prepare, so TFLM's planner (and the measured
// head) already account for it. A model rewritten to read its image from a row reader (its
// input tensor is one row) needs the application's rows, e.g. straight from a camera (top
// to bottom, once per column strip of that stage: row_reader.h's kImagePasses):
//
//   bool ReadRow(void* camera, int row, int8_t* dst, int width, int channels);
//   tflm_ext::patch_stage::SetRowReader(ReadRow, &camera);  // before Invoke()
#ifndef TFLM_EXT_KERNELS_TFLM_PATCH_STAGE_OP_H_
#define TFLM_EXT_KERNELS_TFLM_PATCH_STAGE_OP_H_

#include "patch_stage.h"
#include "tensorflow/lite/micro/micro_common.h"

namespace tflm_ext {

// The registration to pass to MicroMutableOpResolver::AddCustom (a static, never freed).
TFLMRegistration* Register_TFLM_EXT_PATCH_STAGE();

}  // namespace tflm_ext

#endif  // TFLM_EXT_KERNELS_TFLM_PATCH_STAGE_OP_H_
