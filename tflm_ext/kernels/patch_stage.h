// TFLM_EXT_PATCH_STAGE: the arithmetic of the patch-based stage operator, free of TFLM types.
//
// Shared by the firmware adapter (tflm/patch_stage_op.cc, compiled in a TFLM tree) and the
// host adapter (host/host_registerer.cc, compiled by tflm_ext.host_build for the tflite-micro
// wheel). The adapters only translate TFLM tensors into TensorRef and call the four functions
// at the bottom of this file.
//
// The op name, the options version and the order of every options field are defined once, in
// tflm_ext/patch_op.py; tests/tflm_ext/test_patch_op.py compiles a program against this header
// and checks each constant below against Python.
//
// What the operator computes: a chain of inner ops (CONV_2D, DEPTHWISE_CONV_2D, ADD, PAD) on
// one int8 NHWC input (batch 1), bit-exact with TFLM's reference kernels, tile by tile: the
// final output is cut into grid_rows x grid_cols tiles (tile r of R over H rows spans
// [r*H/R, (r+1)*H/R), integer division); for each tile the input window of every inner op is
// found by walking backwards (receptive field, clipped to the image, so SAME padding's
// pad-before only appears at image borders), then the ops run forwards on those windows only.
// Each tile of the last op is written straight into the full output tensor.
//
// Scratch (requested once in Prepare): every intermediate buffer gets the largest window
// (height * width * channels, int8) it takes over all tiles, at a fixed offset; buffers alive
// at the same time (written by op i or read by op i, for some i) never overlap. Offsets are
// planned like TFLM's greedy planner places tensors (largest first, lowest offset that fits),
// so a plain chain needs about its largest pair of neighbouring windows and a residual block
// also its skip window. The stage input and output are full tensors in the arena, not
// scratch, so the op's working set is input tensor + output tensor + scratch, which is what
// the planner predicts (tflm_ext/receptive_field.py, scratch_layout).
#ifndef TFLM_EXT_KERNELS_PATCH_STAGE_H_
#define TFLM_EXT_KERNELS_PATCH_STAGE_H_

#include <stddef.h>
#include <stdint.h>

namespace tflm_ext {
namespace patch_stage {

constexpr char kOpName[] = "TFLM_EXT_PATCH_STAGE";
constexpr int32_t kOptionsVersion = 1;

// The options are little-endian int32 words: kHeaderWords header words, then op_count
// records of kOpWords words each. Buffer numbering: 0 is the stage input, i + 1 the output of
// inner op i; the last op's output is the operator's output tensor.
enum HeaderField {
  kHeaderVersion = 0,
  kHeaderHeaderWords,
  kHeaderOpWords,
  kHeaderOpCount,
  kHeaderGridRows,
  kHeaderGridCols,
  kHeaderInputHeight,
  kHeaderInputWidth,
  kHeaderInputChannels,
  kHeaderWords  // count, not a field
};

enum OpField {
  kOpKind = 0,
  kOpInput,             // buffer read (the first operand of ADD)
  kOpInputB,            // second operand of ADD, else -1
  kOpWeightsInput,      // operator input index of the filter (bias, multipliers, shifts follow)
  kOpOutputHeight,
  kOpOutputWidth,
  kOpOutputChannels,
  kOpKernelHeight,
  kOpKernelWidth,
  kOpStrideHeight,
  kOpStrideWidth,
  kOpDilationHeight,
  kOpDilationWidth,
  kOpPadTop,            // conv/depthwise: TFLM's pad-before; PAD: rows added above
  kOpPadLeft,
  kOpPadBottom,
  kOpPadRight,
  kOpDepthMultiplier,
  kOpInputZeroPoint,
  kOpInputBZeroPoint,
  kOpOutputZeroPoint,   // also PAD's fill value
  kOpActivationMin,
  kOpActivationMax,
  kOpAddLeftShift,      // ADD's requantization, as TFLM computes it in Prepare
  kOpAddInputMultiplier,
  kOpAddInputShift,
  kOpAddInputBMultiplier,
  kOpAddInputBShift,
  kOpAddOutputMultiplier,
  kOpAddOutputShift,
  kOpWords  // count, not a field
};

enum OpKind { kKindConv = 1, kKindDepthwise = 2, kKindAdd = 3, kKindPad = 4 };

constexpr int kMaxOps = 32;
constexpr int kInputsPerWeightedOp = 4;  // filter, bias, per-channel multipliers, shifts

enum Status {
  kOk = 0,
  kBadOptionsLength,
  kBadOptionsVersion,
  kBadOptionsLayout,
  kBadOpCount,
  kBadGrid,
  kBadOp,
  kBadGeometry,
  kBadInputCount,
  kBadTensor,
  kBadMemory,
};

enum ElementType { kTypeOther = 0, kTypeInt8 = 1, kTypeInt32 = 2 };

// One operator input or output as the adapters see it.
struct TensorRef {
  void* data;
  const int32_t* dims;
  int rank;
  ElementType type;
};

// A half-open window [y0, y1) x [x0, x1) in a buffer's full coordinates; empty if y0 >= y1.
struct Window {
  int y0, y1, x0, x1;
};

struct InnerOp {
  int32_t word[kOpWords];
  int32_t operator[](OpField field) const { return word[field]; }
};

// Parsed options plus the plan Prepare computes. One persistent allocation holds the struct
// followed by the arrays it points to, each sized by op_count (ParsedStageBytes).
struct Stage {
  int32_t header[kHeaderWords];
  int op_count;
  int32_t scratch_bytes;
  int scratch_index;          // the adapter's handle of the scratch buffer
  InnerOp* ops;               // op_count records
  Window* need;               // op_count + 1 per-tile windows, rewritten for every tile
  int32_t* offset_of_buffer;  // op_count + 1, in the scratch (intermediate buffers only)
  int8_t* last_use;           // op_count + 1
};

// Persistent bytes ParseOptions needs for these options; 0 when the header is unreadable.
size_t ParsedStageBytes(const uint8_t* options, size_t length);

// Copies and validates the options into memory (ParsedStageBytes long).
Status ParseOptions(const uint8_t* options, size_t length, void* memory, size_t bytes,
                    Stage** stage);

// Checks the operator's tensors against the options, then lays out the scratch.
Status PrepareStage(Stage* stage, const TensorRef* inputs, int input_count,
                    const TensorRef* output);

// Bytes of arena scratch to request (0 for a one-op stage).
size_t ScratchBytes(const Stage* stage);

// Computes the whole stage output, tile by tile.
Status RunStage(Stage* stage, const TensorRef* inputs, int input_count, const TensorRef* output,
                int8_t* scratch);

const char* StatusText(Status status);

}  // namespace patch_stage
}  // namespace tflm_ext

#endif  // TFLM_EXT_KERNELS_PATCH_STAGE_H_
