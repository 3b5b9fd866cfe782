// The slice of the tflite-micro wheel's binary interface the host registerer relies on.
//
// The wheel ships no headers, so these mirror what was measured on the pinned nightly
// (LP64, see docs/tflm-runtime-notes.md). Nothing here is trusted blindly: host_registerer.cc
// checks the resolver's RTTI, every symbol, and the registration array's position and stride
// through the real FindOp before it writes anything, and refuses on any mismatch.
#ifndef TFLM_EXT_KERNELS_HOST_TFLM_ABI_H_
#define TFLM_EXT_KERNELS_HOST_TFLM_ABI_H_

#include <stddef.h>
#include <stdint.h>

namespace tflm_ext {
namespace abi {

struct TfLiteContext;  // changed shape across nightlies: opaque, only passed back to TFLM

struct TfLiteIntArray {
  int size;
  int data[1];  // really `size` entries
};

struct TfLiteEvalTensor {
  void* data;
  TfLiteIntArray* dims;
  int type;  // TfLiteType
};

struct TfLiteNode {  // TF_LITE_STATIC_MEMORY layout
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  void* user_data;
  const void* builtin_data;
  const void* custom_initial_data;
  int custom_initial_data_size;
};

struct TFLMRegistration {
  void* (*init)(TfLiteContext* context, const char* buffer, size_t length);
  void (*free)(TfLiteContext* context, void* buffer);
  int (*prepare)(TfLiteContext* context, TfLiteNode* node);
  int (*invoke)(TfLiteContext* context, TfLiteNode* node);
  void (*reset)(TfLiteContext* context, void* buffer);
  int32_t builtin_code;
  const char* custom_name;
};

static_assert(sizeof(TFLMRegistration) == 56, "TFLMRegistration is 56 bytes on LP64");
static_assert(offsetof(TFLMRegistration, builtin_code) == 0x28, "builtin_code@0x28");
static_assert(offsetof(TFLMRegistration, custom_name) == 0x30, "custom_name@0x30");
static_assert(offsetof(TfLiteNode, user_data) == 0x18, "user_data@0x18");
static_assert(offsetof(TfLiteNode, custom_initial_data_size) == 0x30, "custom size@0x30");
static_assert(sizeof(TfLiteEvalTensor) == 24, "TfLiteEvalTensor is 24 bytes on LP64");

constexpr int kTfLiteOk = 0;
constexpr int kTfLiteError = 1;
constexpr int kTfLiteInt32 = 2;
constexpr int kTfLiteInt8 = 9;
constexpr int32_t kBuiltinCustom = 32;

// PythonOpsResolver is MicroMutableOpResolver<200>: vptr, registrations_[200], then the
// uint32 count of registrations.
constexpr size_t kResolverCapacity = 200;
constexpr size_t kResolverRegistrationsOffset = 8;
constexpr size_t kResolverCountOffset = 0x2bc8;

#ifndef TFLM_EXT_RESOLVER_RTTI_NAME
#define TFLM_EXT_RESOLVER_RTTI_NAME "N6tflite17PythonOpsResolverE"
#endif

// Builtins PythonOpsResolver registers, used to check the registration array's layout
// (BuiltinOperator values from the .tflite schema).
constexpr int32_t kProbeBuiltins[] = {0 /* ADD */, 3 /* CONV_2D */, 4 /* DEPTHWISE_CONV_2D */,
                                      9 /* FULLY_CONNECTED */, 22 /* RESHAPE */,
                                      25 /* SOFTMAX */};

// Mangled names of the exported symbols used (namespace tflite::micro in this nightly).
constexpr char kFindOpByName[] = "_ZNK6tflite5micro22MicroMutableOpResolverILj200EE6FindOpEPKc";
constexpr char kFindOpByCode[] =
    "_ZNK6tflite5micro22MicroMutableOpResolverILj200EE6FindOpENS_15BuiltinOperatorE";
constexpr char kGetEvalTensor[] =
    "_ZN6tflite5micro25MicroContextGetEvalTensorEPKNS0_13TfLiteContextEi";
constexpr char kRequestScratch[] =
    "_ZN6tflite5micro39MicroContextRequestScratchBufferInArenaEPNS0_13TfLiteContextEmPi";
constexpr char kGetScratch[] = "_ZN6tflite5micro28MicroContextGetScratchBufferEPNS0_13TfLiteContextEi";
constexpr char kAllocatePersistent[] =
    "_ZN6tflite5micro36MicroContextAllocatePersistentBufferEPNS0_13TfLiteContextEm";
constexpr char kResolverTypeInfo[] = "_ZTIN6tflite17PythonOpsResolverE";
constexpr char kResolverVtable[] = "_ZTVN6tflite17PythonOpsResolverE";

// Member functions are called with `this` as the first argument (Itanium C++ ABI).
using FindOpByNameFn = const TFLMRegistration* (*)(const void* resolver, const char* name);
using FindOpByCodeFn = const TFLMRegistration* (*)(const void* resolver, int32_t code);
using GetEvalTensorFn = TfLiteEvalTensor* (*)(const TfLiteContext* context, int index);
using RequestScratchFn = int (*)(TfLiteContext* context, size_t bytes, int* index);
using GetScratchFn = void* (*)(TfLiteContext* context, int index);
using AllocatePersistentFn = void* (*)(TfLiteContext* context, size_t bytes);

}  // namespace abi
}  // namespace tflm_ext

#endif  // TFLM_EXT_KERNELS_HOST_TFLM_ABI_H_
