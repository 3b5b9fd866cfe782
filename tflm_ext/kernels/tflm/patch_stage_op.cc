// Firmware adapter of TFLM_EXT_PATCH_STAGE: TFLM's Init/Prepare/Eval over the shared
// arithmetic in ../patch_stage.cc. It only moves TFLM tensors into TensorRefs and asks TFLM
// for memory: persistent memory for the parsed options (Init) and the TensorRef array
// (Prepare, so Eval needs no large stack), and the tile scratch in the arena (Prepare).
//
// No TFLM headers ship with the wheel, so tests compile this file against stand-ins of the
// pinned tree's layout and link it against the wheel's _runtime.so (every TFLM function
// called here is exported there); the host adapter (../host/host_registerer.cc) runs the same
// arithmetic through the same calls, bit-exact against TFLM's builtins. TFLM moved its C types into tflite::micro in October
// 2026; the using-directives below find them in either place. The C types come through
// micro_common.h (via patch_stage_op.h and kernel_util.h): older trees include
// tensorflow/lite/c/common.h from there; 2026 trees define the types in it and their own
// sources include tensorflow/lite/micro/c/common.h, so a tensorflow/lite/c/common.h there is
// missing or TF Lite's, whose global types would clash with tflite::micro's.
#include "tflm/patch_stage_op.h"

#include "patch_stage.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_common.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace tflm_ext {
namespace {

using namespace tflite;         // NOLINT: the TFLM tree's namespace, before October 2026
using namespace tflite::micro;  // NOLINT: and after
namespace ps = patch_stage;

// What node->user_data points to.
struct OpData {
  ps::Stage* stage;
  ps::TensorRef* inputs;  // input_count + 1 (the output last), allocated in Prepare
  int input_count;
};

ps::ElementType TypeOf(TfLiteType type) {
  if (type == kTfLiteInt8) return ps::kTypeInt8;
  if (type == kTfLiteInt32) return ps::kTypeInt32;
  return ps::kTypeOther;
}

// NumInputs/NumOutputs live in tensorflow/lite/kernels/kernel_util.h (tflite) in older trees
// and in micro/kernels/kernel_util.h (tflite::micro) in newer ones; the node's arrays are the
// same everywhere.
int CountOf(const TfLiteIntArray* indices) { return indices == nullptr ? 0 : indices->size; }

ps::TensorRef RefOf(const TfLiteEvalTensor* tensor) {
  if (tensor == nullptr || tensor->dims == nullptr) return {nullptr, nullptr, 0, ps::kTypeOther};
  return {tensor->data.data, tensor->dims->data, tensor->dims->size, TypeOf(tensor->type)};
}

void Gather(TfLiteContext* context, TfLiteNode* node, OpData* data) {
  for (int i = 0; i < data->input_count; ++i) {
    data->inputs[i] = RefOf(GetEvalInput(context, node, i));
  }
  data->inputs[data->input_count] = RefOf(GetEvalOutput(context, node, 0));
}

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  const uint8_t* options = reinterpret_cast<const uint8_t*>(buffer);
  const size_t bytes = ps::ParsedStageBytes(options, length);
  OpData* data =
      static_cast<OpData*>(context->AllocatePersistentBuffer(context, sizeof(OpData)));
  void* memory = bytes == 0 ? nullptr : context->AllocatePersistentBuffer(context, bytes);
  if (data == nullptr) return nullptr;
  *data = {nullptr, nullptr, 0};
  const ps::Status status = ps::ParseOptions(options, length, memory, bytes, &data->stage);
  if (status != ps::kOk) MicroPrintf("%s: %s", ps::kOpName, ps::StatusText(status));
  return data;
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData* data = static_cast<OpData*>(node->user_data);
  TF_LITE_ENSURE(context, data != nullptr && data->stage != nullptr);
  TF_LITE_ENSURE_EQ(context, CountOf(node->outputs), 1);
  data->input_count = CountOf(node->inputs);
  data->inputs = static_cast<ps::TensorRef*>(context->AllocatePersistentBuffer(
      context, sizeof(ps::TensorRef) * (data->input_count + 1)));
  TF_LITE_ENSURE(context, data->inputs != nullptr);
  Gather(context, node, data);
  const ps::Status status = ps::PrepareStage(data->stage, data->inputs, data->input_count,
                                             data->inputs + data->input_count);
  if (status != ps::kOk) {
    MicroPrintf("%s: %s", ps::kOpName, ps::StatusText(status));
    return kTfLiteError;
  }
  const size_t scratch = ps::ScratchBytes(data->stage);
  if (scratch == 0) return kTfLiteOk;
  return context->RequestScratchBufferInArena(context, scratch, &data->stage->scratch_index);
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  OpData* data = static_cast<OpData*>(node->user_data);
  Gather(context, node, data);
  int8_t* scratch = nullptr;
  if (ps::ScratchBytes(data->stage) > 0) {
    scratch = static_cast<int8_t*>(context->GetScratchBuffer(context, data->stage->scratch_index));
  }
  const ps::Status status = ps::RunStage(data->stage, data->inputs, data->input_count,
                                         data->inputs + data->input_count, scratch);
  if (status != ps::kOk) {
    MicroPrintf("%s: %s", ps::kOpName, ps::StatusText(status));
    return kTfLiteError;
  }
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration* Register_TFLM_EXT_PATCH_STAGE() {
  static TFLMRegistration registration = tflite::micro::RegisterOp(Init, Prepare, Eval);
  return &registration;
}

}  // namespace tflm_ext
