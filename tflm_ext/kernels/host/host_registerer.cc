// Host adapter: registers TFLM_EXT_PATCH_STAGE in the tflite-micro wheel's interpreter.
//
// The wheel calls TflmExtRegisterPatchStage(PythonOpsResolver*) by name (dlsym) before it
// builds an interpreter. The resolver's AddCustom is inline and not exported, so this file
// appends the registration itself, after checking everything it assumes (tflm_abi.h):
//   1. the library holding the resolver's vtable can be found and reopened;
//   2. every exported symbol used is there;
//   3. the resolver's vtable and RTTI are PythonOpsResolver's;
//   4. the registration count is below the capacity (200);
//   5. the real FindOp finds known builtins inside the assumed array, at the assumed stride,
//      with builtin_code where assumed;
//   6. the op name is not registered yet;
// then confirms the new entry through the real FindOp, and otherwise refuses (returns false,
// after one line on fd 2, which tflm_ext.interpreter quotes) without leaving a change behind.
// Besides the registerer, the library exports TflmExtSetRowImage: the host's row reader
// (tflm_ext.row_reader), which feeds a stage reading its input rows from an image in host
// memory. Nothing else is exported (-fvisibility=hidden); the library needs only libc.
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../patch_stage.h"
#include "tflm_abi.h"

#ifndef TFLM_EXT_SUPPORTED_WHEEL
#define TFLM_EXT_SUPPORTED_WHEEL "(unknown)"
#endif
#ifndef TFLM_EXT_INSTALLED_WHEEL
#define TFLM_EXT_INSTALLED_WHEEL "(unknown)"
#endif

namespace {

namespace ps = tflm_ext::patch_stage;
using namespace tflm_ext::abi;

struct Runtime {
  FindOpByNameFn find_by_name;
  FindOpByCodeFn find_by_code;
  GetEvalTensorFn get_eval_tensor;
  RequestScratchFn request_scratch;
  GetScratchFn get_scratch;
  AllocatePersistentFn allocate_persistent;
};

// Set by the first successful registration; every interpreter of the process shares the one
// _runtime.so, so later registrations find the same addresses.
Runtime g_runtime;

constexpr int kMaxInputs = 1 + ps::kInputsPerWeightedOp * ps::kMaxOps;

void Log(const char* format, ...) {
  char line[640];
  va_list args;
  va_start(args, format);
  const int length = vsnprintf(line, sizeof(line) - 1, format, args);
  va_end(args);
  if (length <= 0) return;
  size_t size = static_cast<size_t>(length) < sizeof(line) - 1 ? length : sizeof(line) - 2;
  line[size++] = '\n';
  ssize_t ignored = write(2, line, size);
  (void)ignored;
}

int Fail(const char* what) {
  Log("%s: %s", ps::kOpName, what);
  return kTfLiteError;
}

ps::ElementType TypeOf(int tflite_type) {
  if (tflite_type == kTfLiteInt8) return ps::kTypeInt8;
  if (tflite_type == kTfLiteInt32) return ps::kTypeInt32;
  return ps::kTypeOther;
}

// The node's inputs and output as TensorRefs; returns the input count, -1 if unusable.
int Gather(TfLiteContext* context, const TfLiteNode* node, ps::TensorRef* inputs,
           ps::TensorRef* output) {
  if (node->inputs == nullptr || node->outputs == nullptr || node->outputs->size != 1 ||
      node->inputs->size < 1 || node->inputs->size > kMaxInputs) {
    return -1;
  }
  for (int i = 0; i <= node->inputs->size; ++i) {
    const bool is_output = i == node->inputs->size;
    const int index = is_output ? node->outputs->data[0] : node->inputs->data[i];
    const TfLiteEvalTensor* t = index < 0 ? nullptr : g_runtime.get_eval_tensor(context, index);
    ps::TensorRef ref = {nullptr, nullptr, 0, ps::kTypeOther};
    if (t != nullptr && t->dims != nullptr) {
      ref = {t->data, t->dims->data, t->dims->size, TypeOf(t->type)};
    }
    (is_output ? *output : inputs[i]) = ref;
  }
  return node->inputs->size;
}

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  const uint8_t* options = reinterpret_cast<const uint8_t*>(buffer);
  ps::Stage* stage = nullptr;
  const size_t bytes = ps::ParsedStageBytes(options, length);
  void* memory = bytes == 0 ? nullptr : g_runtime.allocate_persistent(context, bytes);
  const ps::Status status = ps::ParseOptions(options, length, memory, bytes, &stage);
  if (status != ps::kOk) {
    Fail(ps::StatusText(status));
    return nullptr;
  }
  return stage;
}

void Free(TfLiteContext*, void*) {}  // persistent arena memory: nothing to free

void Reset(TfLiteContext*, void*) {}  // stateless between invocations

int Prepare(TfLiteContext* context, TfLiteNode* node) {
  ps::Stage* stage = static_cast<ps::Stage*>(node->user_data);
  if (stage == nullptr) return Fail("custom options were rejected in Init (see above)");
  ps::TensorRef inputs[kMaxInputs];
  ps::TensorRef output;
  const int count = Gather(context, node, inputs, &output);
  if (count < 0) return Fail(ps::StatusText(ps::kBadInputCount));
  const ps::Status status = ps::PrepareStage(stage, inputs, count, &output);
  if (status != ps::kOk) return Fail(ps::StatusText(status));
  const size_t bytes = ps::ScratchBytes(stage);
  if (bytes > 0 &&
      g_runtime.request_scratch(context, bytes, &stage->scratch_index) != kTfLiteOk) {
    return Fail("the arena cannot hold the tile scratch");
  }
  return kTfLiteOk;
}

int Eval(TfLiteContext* context, TfLiteNode* node) {
  ps::Stage* stage = static_cast<ps::Stage*>(node->user_data);
  ps::TensorRef inputs[kMaxInputs];
  ps::TensorRef output;
  const int count = Gather(context, node, inputs, &output);
  if (stage == nullptr || count < 0) return Fail(ps::StatusText(ps::kBadInputCount));
  int8_t* scratch = nullptr;
  if (ps::ScratchBytes(stage) > 0) {
    scratch = static_cast<int8_t*>(g_runtime.get_scratch(context, stage->scratch_index));
  }
  const ps::Status status = ps::RunStage(stage, inputs, count, &output, scratch);
  return status == ps::kOk ? kTfLiteOk : Fail(ps::StatusText(status));
}

bool Refuse(const char* runtime_path, const char* format, ...) {
  char reason[320];
  va_list args;
  va_start(args, format);
  vsnprintf(reason, sizeof(reason), format, args);
  va_end(args);
  Log("tflm_ext: refusing to register %s in %s: %s. This kernel library supports tflite-micro "
      "%s; the installed wheel is tflite-micro %s.",
      ps::kOpName, runtime_path, reason, TFLM_EXT_SUPPORTED_WHEEL, TFLM_EXT_INSTALLED_WHEEL);
  return false;
}

// Step 1-2: the runtime library and every symbol in it.
const char* ResolveRuntime(void* handle, Runtime* runtime) {
  struct Wanted {
    const char* name;
    void** slot;
  } wanted[] = {
      {kFindOpByName, reinterpret_cast<void**>(&runtime->find_by_name)},
      {kFindOpByCode, reinterpret_cast<void**>(&runtime->find_by_code)},
      {kGetEvalTensor, reinterpret_cast<void**>(&runtime->get_eval_tensor)},
      {kRequestScratch, reinterpret_cast<void**>(&runtime->request_scratch)},
      {kGetScratch, reinterpret_cast<void**>(&runtime->get_scratch)},
      {kAllocatePersistent, reinterpret_cast<void**>(&runtime->allocate_persistent)},
  };
  for (const Wanted& w : wanted) {
    *w.slot = dlsym(handle, w.name);
    if (*w.slot == nullptr) return w.name;
  }
  return nullptr;
}

// Step 3: the object really is a PythonOpsResolver (vtable and RTTI from the same library).
bool IsPythonOpsResolver(void* handle, void* resolver) {
  void** vptr = *static_cast<void***>(resolver);
  const char* vtable = static_cast<const char*>(dlsym(handle, kResolverVtable));
  void* typeinfo = dlsym(handle, kResolverTypeInfo);
  if (vtable == nullptr || typeinfo == nullptr) return false;
  if (reinterpret_cast<const char*>(vptr) != vtable + 2 * sizeof(void*)) return false;
  if (vptr[-1] != typeinfo) return false;
  const char* name = static_cast<const char* const*>(typeinfo)[1];
  return name != nullptr && strcmp(name, TFLM_EXT_RESOLVER_RTTI_NAME) == 0;
}

// Step 5: FindOp(builtin) lands inside registrations_[0, count) at the assumed stride.
const char* CheckArray(const Runtime& runtime, void* resolver, uint32_t count, int32_t* code) {
  const char* base = static_cast<const char*>(resolver) + kResolverRegistrationsOffset;
  for (int32_t probe : kProbeBuiltins) {
    *code = probe;
    const TFLMRegistration* found = runtime.find_by_code(resolver, probe);
    if (found == nullptr) return "FindOp finds no registration for builtin";
    const ptrdiff_t offset = reinterpret_cast<const char*>(found) - base;
    if (offset < 0 || offset % sizeof(TFLMRegistration) != 0 ||
        static_cast<size_t>(offset) / sizeof(TFLMRegistration) >= count) {
      return "FindOp returns an address outside the assumed registration array for builtin";
    }
    if (found->builtin_code != probe || found->custom_name != nullptr) {
      return "the registration FindOp returns does not hold the assumed fields for builtin";
    }
  }
  return nullptr;
}

bool Register(void* resolver) {
  Dl_info info;
  void* vptr = resolver == nullptr ? nullptr : *static_cast<void**>(resolver);
  if (vptr == nullptr || dladdr(vptr, &info) == 0 || info.dli_fname == nullptr) {
    return Refuse("(unknown library)", "the resolver's vtable is in no loaded library");
  }
  const char* path = info.dli_fname;
  void* handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  if (handle == nullptr) return Refuse(path, "cannot reopen the library that defines it");
  Runtime runtime;
  const char* missing = ResolveRuntime(handle, &runtime);
  if (missing != nullptr) return Refuse(path, "symbol %s is not exported", missing);
  if (!IsPythonOpsResolver(handle, resolver)) {
    return Refuse(path, "the resolver's vtable/RTTI is not %s", TFLM_EXT_RESOLVER_RTTI_NAME);
  }
  uint32_t* count = reinterpret_cast<uint32_t*>(static_cast<char*>(resolver) +
                                                kResolverCountOffset);
  if (*count == 0 || *count >= kResolverCapacity) {
    return Refuse(path, "registration count %u is not in 1..%zu", *count, kResolverCapacity - 1);
  }
  int32_t code = 0;
  const char* layout = CheckArray(runtime, resolver, *count, &code);
  if (layout != nullptr) return Refuse(path, "%s %d", layout, code);
  if (runtime.find_by_name(resolver, ps::kOpName) != nullptr) {
    return Refuse(path, "%s is already registered in this resolver", ps::kOpName);
  }
  TFLMRegistration* entry = reinterpret_cast<TFLMRegistration*>(
      static_cast<char*>(resolver) + kResolverRegistrationsOffset +
      *count * sizeof(TFLMRegistration));
  const uint32_t before = *count;
  *entry = {Init, Free, Prepare, Eval, Reset, kBuiltinCustom, ps::kOpName};
  *count = before + 1;
  if (runtime.find_by_name(resolver, ps::kOpName) != entry) {
    memset(entry, 0, sizeof(*entry));
    *count = before;
    return Refuse(path, "FindOp does not return the registration just added");
  }
  g_runtime = runtime;
  return true;
}

// The host's row reader: rows of one int8 NHWC image the caller keeps alive.
struct RowImage {
  const int8_t* data;
  int height, width, channels;
};

RowImage g_image;

bool ReadImageRow(void* user, int row, int8_t* dst, int width, int channels) {
  const RowImage& image = *static_cast<const RowImage*>(user);
  if (image.data == nullptr || row < 0 || row >= image.height || width != image.width ||
      channels != image.channels) {
    Log("%s: the host row image (%dx%dx%d) has no row %d of width %d x %d channels",
        ps::kOpName, image.height, image.width, image.channels, row, width, channels);
    return false;
  }
  const size_t bytes = static_cast<size_t>(width) * channels;
  memcpy(dst, image.data + static_cast<size_t>(row) * bytes, bytes);
  return true;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) bool TflmExtRegisterPatchStage(void* resolver) {
  return Register(resolver);
}

// Serves every row-reading stage from `data` (height x width x channels int8) until the
// next call; nullptr unsets the reader.
extern "C" __attribute__((visibility("default"))) void TflmExtSetRowImage(const int8_t* data,
                                                                         int height, int width,
                                                                         int channels) {
  g_image = {data, height, width, channels};
  ps::SetRowReader(data == nullptr ? nullptr : ReadImageRow, &g_image);
}
