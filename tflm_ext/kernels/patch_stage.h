// TFLM_EXT_PATCH_STAGE: the arithmetic of the patch-based stage operator, free of TFLM types.
//
// Shared by the firmware adapter (tflm/patch_stage_op.cc, compiled in a TFLM tree) and the
// host adapter (host/host_registerer.cc, compiled by tflm_ext.host_build for the tflite-micro
// wheel). The adapters only translate TFLM tensors into TensorRef and call the functions at
// the bottom of this file.
//
// The op name, the options versions and the order of every options field are defined once,
// in tflm_ext/patch_op.py; tests/tflm_ext/test_patch_op.py compiles a program against this
// header and checks each constant below against Python.
//
// What the operator computes: a chain of inner ops (CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D,
// ADD, PAD and, streamed only, a trailing global average pool: AVERAGE_POOL_2D over the whole
// map or MEAN over height and width) on one int8 NHWC input (batch 1), bit-exact with TFLM's
// reference kernels, in one of two executions:
//
// Tiles (options version 1, or version 2 with execution kExecutionTiles): the final output is
// cut into grid_rows x grid_cols tiles (tile r of R over H rows spans [r*H/R, (r+1)*H/R),
// integer division); for each tile the input window of every inner op is found by walking
// backwards (receptive field, clipped to the image), then the ops run forwards on those
// windows only; overlapping windows are recomputed. Scratch: every intermediate buffer gets
// the largest window it takes over all tiles, at a fixed offset; buffers alive at the same
// time never overlap (laid out as tflm_ext/receptive_field.py's scratch_layout does).
//
// Streaming (version 2, execution kExecutionStream): the output is produced row by row, top
// to bottom, in grid_cols column strips (1: the whole width, and nothing is recomputed).
// Each intermediate buffer is a ring of full-strip-width rows; a row is computed when a
// consumer first needs it (a pull: the last op asks for its next row, which asks its inputs
// for the rows its window reads, recursively), exactly once per strip, and its slot is
// reused once no consumer will read it again. Ring sizes come from running that schedule
// without arithmetic in Prepare: a buffer read by one convolution holds (k - 1) * d + 1
// rows (its consumer's window: the producer only writes after the consumer has finished
// the row that last read the slot); a skip tensor also the rows its ADD still waits for
// while the other branch runs ahead. A trailing global pool accumulates one int32 per
// channel row by row. Scratch: the pool sums first, then the rings, in buffer order; tflm_ext
// /streaming.py computes the same sizes for the planner.
//
// The stage input and output are full tensors in the arena, not scratch, so the op's working
// set is input tensor + output tensor + scratch, which is what the planner predicts. With
// input source kInputRowReader (streaming, on any strip count) the stage input is not in the
// arena: the operator's input tensor is one row (1, 1, width, channels) that only describes
// it, and the stage pulls whole rows from the application's RowReader (SetRowReader) into a
// ring of its first consumers' window of rows, placed in the scratch before the other rings.
// Each column strip pulls the rows again and reads only its columns of them: the reader
// serves the image once per strip, which is what lets the rings shrink to a strip's width
// while the image still never exists whole.
#ifndef TFLM_EXT_KERNELS_PATCH_STAGE_H_
#define TFLM_EXT_KERNELS_PATCH_STAGE_H_

#include <stddef.h>
#include <stdint.h>

namespace tflm_ext {
namespace patch_stage {

constexpr char kOpName[] = "TFLM_EXT_PATCH_STAGE";
constexpr int32_t kOptionsVersion = 2;      // the newest options version this kernel reads
constexpr int32_t kTileOptionsVersion = 1;  // version 1: tiles only, the shorter layout

// The options are little-endian int32 words: header words, then op_count records. Version 1
// has the first kHeaderWordsV1 header words and kOpWordsV1 words per record; version 2 all
// of them. Buffer numbering: 0 is the stage input, i + 1 the output of inner op i; the last
// op's output is the operator's output tensor.
enum HeaderField {
  kHeaderVersion = 0,
  kHeaderHeaderWords,
  kHeaderOpWords,
  kHeaderOpCount,
  kHeaderGridRows,      // streaming: 1
  kHeaderGridCols,      // streaming: column strips
  kHeaderInputHeight,
  kHeaderInputWidth,
  kHeaderInputChannels,
  kHeaderExecution,     // version 2: Execution (version 1: tiles)
  kHeaderInputSource,   // version 2: InputSource (version 1: the input tensor)
  kHeaderWords  // count, not a field
};
constexpr int kHeaderWordsV1 = kHeaderExecution;

enum OpField {
  kOpKind = 0,
  kOpInput,             // buffer read (the first operand of ADD)
  kOpInputB,            // second operand of ADD, else -1
  kOpWeightsInput,      // operator input index of the filter (bias, multipliers, shifts follow)
  kOpOutputHeight,
  kOpOutputWidth,
  kOpOutputChannels,
  kOpKernelHeight,      // global pools: the input's height and width
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
  kOpRequantMultiplier,  // version 2, MEAN: QuantizeMultiplier(input scale / output scale)
  kOpRequantShift,
  kOpWords  // count, not a field
};
constexpr int kOpWordsV1 = kOpRequantMultiplier;

enum OpKind {
  kKindConv = 1,
  kKindDepthwise = 2,
  kKindAdd = 3,
  kKindPad = 4,
  kKindGlobalAveragePool = 5,  // version 2, streaming, last op only
  kKindMean = 6,               // version 2, streaming, last op only
  kKindMaxPool = 7,            // version 2: MAX_POOL_2D over a window, tiles or streaming
};

enum Execution { kExecutionTiles = 1, kExecutionStream = 2 };

enum InputSource { kInputTensor = 0, kInputRowReader = 1 };

constexpr int kMaxOps = 128;     // inner ops of a streamed stage (persistent bookkeeping)
constexpr int kMaxTileOps = 32;  // inner ops of a tiled stage (its planner's stack arrays)
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
  kBadExecution,
  kBadStreamOp,
  kBadRowReader,
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
  int32_t word[kOpWords];  // version 1 records leave the version 2 fields 0
  int32_t operator[](OpField field) const { return word[field]; }
};

struct View;  // inner_ops.h

// Parsed options plus the plan Prepare computes. One persistent allocation holds the struct
// followed by the arrays it points to, each sized by op_count (ParsedStageBytes).
struct Stage {
  int32_t header[kHeaderWords];  // version 1 options: execution tiles, input tensor
  int op_count;
  int max_reach;              // rows one output row of any inner op reads (row_table size)
  int32_t scratch_bytes;
  int scratch_index;          // the adapter's handle of the scratch buffer
  int32_t pool_rows;          // streaming: input rows the trailing pool has summed
  const int8_t** row_table;   // max_reach: the input rows of the row being computed
  View* views;                // op_count + 1: where each buffer lives for this tile/strip
  InnerOp* ops;               // op_count records
  Window* need;               // op_count + 1 windows of the tile or strip being computed
  int32_t* offset_of_buffer;  // op_count + 1, in the scratch (intermediate buffers only)
  int32_t* last_use;          // op_count + 1
  int32_t* ring_rows;         // op_count + 1, streaming
  int32_t* ring_width;        // op_count + 1, streaming: pixels per ring row
  int32_t* done;              // op_count + 1, streaming: next row each buffer computes
  int32_t* pull_buffer;       // op_count + 1, streaming: the pull stack
  int32_t* pull_until;        // op_count + 1
};

// The application's source of stage-input rows for input source kInputRowReader: writes row
// `row` (0 at the top) of the stage input, `width` x `channels` int8 values (NHWC), to
// `dst`, and returns false when it cannot. Rows are asked for top to bottom, each once per
// column strip of the stage (kHeaderGridCols passes over the image per invocation, one pass
// after the other). One reader serves the process (every such stage): set it before
// Invoke; nullptr unsets it.
using RowReader = bool (*)(void* user, int row, int8_t* dst, int width, int channels);
void SetRowReader(RowReader reader, void* user);

// Persistent bytes ParseOptions needs for these options; 0 when the header is unreadable.
size_t ParsedStageBytes(const uint8_t* options, size_t length);

// Copies and validates the options into memory (ParsedStageBytes long).
Status ParseOptions(const uint8_t* options, size_t length, void* memory, size_t bytes,
                    Stage** stage);

// Checks the operator's tensors against the options, then lays out the scratch.
Status PrepareStage(Stage* stage, const TensorRef* inputs, int input_count,
                    const TensorRef* output);

// Bytes of arena scratch to request (may be 0).
size_t ScratchBytes(const Stage* stage);

// Computes the whole stage output.
Status RunStage(Stage* stage, const TensorRef* inputs, int input_count, const TensorRef* output,
                int8_t* scratch);

const char* StatusText(Status status);

}  // namespace patch_stage
}  // namespace tflm_ext

#endif  // TFLM_EXT_KERNELS_PATCH_STAGE_H_
