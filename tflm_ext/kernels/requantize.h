// Fixed-point requantization, bit-exact with TFLM's reference kernels when
// TFLITE_SINGLE_ROUNDING is not defined (the tflite-micro wheel's build, and TFLM's default):
// gemmlowp-style double rounding, i.e. a rounding doubling high multiply followed by a
// rounding right shift. Free of TFLM types; shared by firmware and host.
#ifndef TFLM_EXT_KERNELS_REQUANTIZE_H_
#define TFLM_EXT_KERNELS_REQUANTIZE_H_

#include <stdint.h>

namespace tflm_ext {
namespace requantize {

// The high 32 bits of 2*a*b, rounded to nearest (ties away from zero, on the 64-bit product).
// The one product that does not fit, INT32_MIN * INT32_MIN, saturates to INT32_MAX.
inline int32_t SaturatingRoundingDoublingHighMul(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  const int64_t product = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  const int64_t nudge = product >= 0 ? (int64_t{1} << 30) : (1 - (int64_t{1} << 30));
  // Division, not a shift: it truncates toward zero, which the nudge above relies on.
  return static_cast<int32_t>((product + nudge) / (int64_t{1} << 31));
}

// x / 2^exponent rounded to nearest, ties away from zero; exponent in [0, 31].
inline int32_t RoundingDivideByPOT(int32_t x, int exponent) {
  const int32_t mask = static_cast<int32_t>((int64_t{1} << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

// x * multiplier * 2^shift, multiplier a Q31 significand as QuantizeMultiplier makes it.
// A positive shift is applied before the multiply (wrapping like the reference), a negative
// one after it, with rounding.
inline int32_t MultiplyByQuantizedMultiplier(int32_t x, int32_t multiplier, int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  const int32_t shifted = static_cast<int32_t>(static_cast<uint32_t>(x) << left_shift);
  return RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(shifted, multiplier),
                             right_shift);
}

// ADD's form: multiplier < 1 with a non-positive exponent, applied without a pre-shift.
inline int32_t MultiplyByQuantizedMultiplierSmallerThanOneExp(int32_t x, int32_t multiplier,
                                                              int left_shift) {
  return RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, multiplier), -left_shift);
}

inline int32_t Clamp(int32_t value, int32_t low, int32_t high) {
  return value < low ? low : (value > high ? high : value);
}

}  // namespace requantize
}  // namespace tflm_ext

#endif  // TFLM_EXT_KERNELS_REQUANTIZE_H_
