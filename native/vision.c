/*
 * Loops of the frame path in C (src/vision/native.ts loads them; docs/decisions.md, "Preprocessing in C"):
 *
 * 1. The detector's bilinear resize + normalisation (src/vision/preprocess.ts, `runBilinear`): an RGB24 frame to
 * the model's planar float input. The JavaScript loop took 2-3 ms of the main thread per 768x576 frame, the
 * largest part of the frame path's work beside the inference.
 *
 * The caller computes the sampling tables (preprocess.ts `bilinearTable`), so both paths sample the same source
 * pixels with the same weights; this file only runs the loop. Every index the tables can produce is checked
 * against the buffers before the loop, so a wrong call throws instead of reading or writing out of bounds.
 *
 * bilinear(src: Uint8Array, srcStride, out: Float32Array | Uint8Array, outWidth, line0, planes: Int32Array[3],
 *          x0: Int32Array, x1: Int32Array, wx: Float32Array, y0: Int32Array, y1: Int32Array, wy: Float32Array,
 *          gain: Float32Array[3], offset: Float32Array[3], scale?, zeroPoint?)
 *   With a Uint8Array `out` (a model whose input is quantized), each value is quantized with scale and zeroPoint
 *   as onnxruntime's QuantizeLinear does (see `quantize` below).
 *   x0/x1: per output column the byte offset in a row of the left/right source pixel; wx the right one's weight.
 *   y0/y1: per output row the source row above/below; wy the lower one's weight.
 *   Output row y, column x, channel c goes to out[planes[c] + line0 + y * outWidth + x].
 */
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  void *data;
  size_t length; /* elements */
} array_t;

static int typed(napi_env env, napi_value v, napi_typedarray_type want, array_t *a) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  if (napi_get_typedarray_info(env, v, &type, &a->length, &a->data, &buffer, &offset) != napi_ok) return 0;
  return type == want || (want == napi_uint8_array && type == napi_uint8_clamped_array);
}

/* The model input: a Float32Array, or a Uint8Array (plain or clamped) for a model whose input is quantized. */
static int model_input(napi_env env, napi_value v, array_t *a, int *quantized) {
  if (typed(env, v, napi_float32_array, a)) {
    *quantized = 0;
    return 1;
  }
  *quantized = 1;
  return typed(env, v, napi_uint8_array, a);
}

/* A row of a model's uint8 input from the float values: bit for bit what onnxruntime's QuantizeLinear computes
 * from those floats (x / scale in float, rounded half to even, plus the zero point, clamped to 0-255), so a model
 * whose first QuantizeLinear moved into the preprocessing gives the same outputs. Adding 1.5 * 2^23 leaves no
 * fraction bits in the float, so the FPU's default rounding (to nearest, ties to even) rounds, and the integer
 * sits in the low mantissa bits; the clamp is then integer. Needs |x / scale| < 2^22, which
 * `quantization_fits` checks once per call. A loop of its own (not inlined into the resize loop) so that it
 * vectorises: 0.2 ms for a 416x416 input here, against 0.4 ms with a float clamp and conversion. */
__attribute__((noinline)) static void quantize_row(const float *restrict src, uint8_t *restrict dst, size_t n, float scale, int32_t zero_point) {
  for (size_t i = 0; i < n; i++) {
    const float q = src[i] / scale + 12582912.0f;
    int32_t v;
    memcpy(&v, &q, sizeof v);
    v = v - 0x4B400000 + zero_point;
    v = v < 0 ? 0 : v;
    dst[i] = (uint8_t)(v > 255 ? 255 : v);
  }
}

/* Where one output row's three planes are written as floats: the output's planes themselves, or for a uint8
 * output the scratch row `tmp` (3 * dw floats), which `finish_row` then quantizes into them. */
typedef struct {
  float *plane[3];
} row_t;

static row_t output_row(int quantized, float *tmp, const array_t *out, const int32_t *pl, size_t line, size_t dw) {
  row_t r;
  for (int c = 0; c < 3; c++) r.plane[c] = quantized ? tmp + (size_t)c * dw : (float *)out->data + pl[c] + line;
  return r;
}

static void finish_row(int quantized, const row_t *r, const array_t *out, const int32_t *pl, size_t line, size_t dw, float scale, int32_t zero_point) {
  if (!quantized) return;
  for (int c = 0; c < 3; c++) quantize_row(r->plane[c], (uint8_t *)out->data + pl[c] + line, dw, scale, zero_point);
}

/* Whether every value the resize can produce from pixels in 0-255, v * gain + offset, divided by scale stays
 * below 2^22 in magnitude (quantize_row's range); a manifest with a tiny scale or std fails instead. */
static int quantization_fits(const array_t *gain, const array_t *offset, float scale) {
  if (gain->length != 3 || offset->length != 3) return 0;
  const float *g = gain->data, *off = offset->data;
  float worst = 0.0f;
  for (int c = 0; c < 3; c++) {
    const float a = (g[c] < 0 ? -g[c] : g[c]) * 255.0f + (off[c] < 0 ? -off[c] : off[c]);
    if (!(a < 1e30f)) return 0;
    if (a > worst) worst = a;
  }
  return scale > 0.0f && worst / scale < 4194304.0f;
}

/* argv[i] as a float, or `fallback` when the argument is absent (undefined). */
static int number_or(napi_env env, size_t argc, napi_value *argv, size_t i, float fallback, float *out) {
  if (i >= argc) {
    *out = fallback;
    return 1;
  }
  napi_valuetype type;
  if (napi_typeof(env, argv[i], &type) != napi_ok) return 0;
  if (type == napi_undefined) {
    *out = fallback;
    return 1;
  }
  double d;
  if (napi_get_value_double(env, argv[i], &d) != napi_ok) return 0;
  *out = (float)d;
  return 1;
}

static int integer(napi_env env, napi_value v, int64_t *out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

static napi_value fail(napi_env env, const char *message) {
  napi_throw_range_error(env, NULL, message);
  return NULL;
}

static napi_value bilinear(napi_env env, napi_callback_info info) {
  size_t argc = 16;
  napi_value argv[16];
  array_t src, out, planes, x0, x1, wx, y0, y1, wy, gain, offset;
  int64_t stride, width, line0;
  int quantized;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 14) return fail(env, "bilinear: 14 arguments");
  if (!typed(env, argv[0], napi_uint8_array, &src) || !integer(env, argv[1], &stride) ||
      !model_input(env, argv[2], &out, &quantized) || !integer(env, argv[3], &width) || !integer(env, argv[4], &line0) ||
      !typed(env, argv[5], napi_int32_array, &planes) || !typed(env, argv[6], napi_int32_array, &x0) ||
      !typed(env, argv[7], napi_int32_array, &x1) || !typed(env, argv[8], napi_float32_array, &wx) ||
      !typed(env, argv[9], napi_int32_array, &y0) || !typed(env, argv[10], napi_int32_array, &y1) ||
      !typed(env, argv[11], napi_float32_array, &wy) || !typed(env, argv[12], napi_float32_array, &gain) ||
      !typed(env, argv[13], napi_float32_array, &offset)) {
    return fail(env, "bilinear: argument of the wrong type");
  }
  float scale, zp;
  if (!number_or(env, argc, argv, 14, 0.0f, &scale) || !number_or(env, argc, argv, 15, 0.0f, &zp)) return fail(env, "bilinear: scale and zero point are numbers");
  if (quantized && !quantization_fits(&gain, &offset, scale)) return fail(env, "bilinear: a uint8 output needs a quantization scale that fits the values (positive, values / scale below 2^22)");
  const int32_t zero_point = (int32_t)zp;
  const size_t dw = x0.length;
  const size_t dh = y0.length;
  if (x1.length != dw || wx.length != dw || y1.length != dh || wy.length != dh || planes.length != 3 || gain.length != 3 ||
      offset.length != 3 || stride <= 0 || width <= 0 || line0 < 0 || (int64_t)dw > width) {
    return fail(env, "bilinear: table lengths or sizes do not match");
  }
  const int32_t *px0 = x0.data, *px1 = x1.data, *py0 = y0.data, *py1 = y1.data, *pl = planes.data;
  /* Bounds: every byte read is below row_max * stride + col_max + 3; every float written below the last
   * plane's end. */
  int64_t col_max = 0, row_max = 0, plane_max = 0;
  for (size_t i = 0; i < dw; i++) {
    if (px0[i] < 0 || px1[i] < 0) return fail(env, "bilinear: negative column offset");
    if (px0[i] > col_max) col_max = px0[i];
    if (px1[i] > col_max) col_max = px1[i];
  }
  for (size_t i = 0; i < dh; i++) {
    if (py0[i] < 0 || py1[i] < 0) return fail(env, "bilinear: negative row");
    if (py0[i] > row_max) row_max = py0[i];
    if (py1[i] > row_max) row_max = py1[i];
  }
  for (int c = 0; c < 3; c++) {
    if (pl[c] < 0) return fail(env, "bilinear: negative plane offset");
    if (pl[c] > plane_max) plane_max = pl[c];
  }
  if (col_max + 3 > stride || (uint64_t)(row_max * stride + stride) > src.length) return fail(env, "bilinear: tables reach past the frame");
  if (dh > 0 && (uint64_t)(plane_max + line0 + (int64_t)(dh - 1) * width + (int64_t)dw) > out.length) {
    return fail(env, "bilinear: output too small for the tables");
  }

  const uint8_t *s = src.data;
  const float *fwx = wx.data, *fwy = wy.data, *g = gain.data, *off = offset.data;
  /* A uint8 output: each row is written as floats here first, then quantized into the planes. */
  float *tmp = quantized ? malloc(sizeof(float) * 3 * (dw ? dw : 1)) : NULL;
  if (quantized && !tmp) return fail(env, "bilinear: out of memory");
  for (size_t y = 0; y < dh; y++) {
    const uint8_t *top = s + (size_t)py0[y] * (size_t)stride;
    const uint8_t *bottom = s + (size_t)py1[y] * (size_t)stride;
    const float v = fwy[y];
    const size_t line = (size_t)line0 + y * (size_t)width;
    const row_t row = output_row(quantized, tmp, &out, pl, line, dw);
    float *f0 = row.plane[0], *f1 = row.plane[1], *f2 = row.plane[2];
    const float g0 = g[0], g1 = g[1], g2 = g[2], off0 = off[0], off1 = off[1], off2 = off[2];
    for (size_t x = 0; x < dw; x++) {
      const uint8_t *a = top + px0[x], *b = top + px1[x], *c = bottom + px0[x], *d = bottom + px1[x];
      const float w = fwx[x];
      float u = a[0] + (b[0] - a[0]) * w, l = c[0] + (d[0] - c[0]) * w;
      const float v0 = (u + (l - u) * v) * g0 + off0;
      u = a[1] + (b[1] - a[1]) * w; l = c[1] + (d[1] - c[1]) * w;
      const float v1 = (u + (l - u) * v) * g1 + off1;
      u = a[2] + (b[2] - a[2]) * w; l = c[2] + (d[2] - c[2]) * w;
      const float v2 = (u + (l - u) * v) * g2 + off2;
      f0[x] = v0; f1[x] = v1; f2[x] = v2;
    }
    finish_row(quantized, &row, &out, pl, line, dw, scale, zero_point);
  }
  free(tmp);
  return NULL;
}

/*
 * 1b. The same resize + normalisation from a YUV 4:2:0 frame (I420: Y plane, then U, then V, each chroma plane
 * ceil(width/2) x ceil(height/2)), limited-range BT.601, as the cameras' frame sources deliver it: Y and the two
 * chroma planes are each sampled bilinearly (own tables), then converted to RGB and clamped, at the output size
 * only. Converting the whole frame to RGB first (what ffmpeg's rgb24 output did) costs a 768x576 frame 1.3 MB of
 * writes and reads; this reads 0.66 MB and converts 416x312 pixels (docs/decisions.md, "Frames stay YUV").
 *
 * bilinearI420(src: Uint8Array, width, height, out: Float32Array | Uint8Array, outWidth, line0, planes: Int32Array[3],
 *              x0, x1: Int32Array, wx: Float32Array, y0, y1: Int32Array, wy: Float32Array,
 *              cx0, cx1: Int32Array, cwx: Float32Array, cy0, cy1: Int32Array, cwy: Float32Array,
 *              gain: Float32Array[3], offset: Float32Array[3], scale?, zeroPoint?)
 *   x0/x1: per output column the Y-plane column left/right of its centre, wx the right one's weight; y0/y1/wy
 *   likewise for rows; cx0.. and cy0.. the same in the chroma planes. gain/offset are per R, G, B.
 */
#define KY (255.0f / 219.0f)
#define KRV (1.402f * 255.0f / 224.0f)
#define KGU (1.772f * 0.114f / 0.587f * 255.0f / 224.0f)
#define KGV (1.402f * 0.299f / 0.587f * 255.0f / 224.0f)
#define KBU (1.772f * 255.0f / 224.0f)

/* Written so the compiler makes it two branch-free min/max instructions: with branches, bilinearI420 took
 * 1.43 ms a frame instead of 1.26. */
static inline float clamp255(float v) {
  v = v > 0.0f ? v : 0.0f;
  return v < 255.0f ? v : 255.0f;
}

/* Every entry of `t` in [0, limit). */
static int indices_below(const array_t *t, int64_t limit) {
  const int32_t *p = t->data;
  for (size_t i = 0; i < t->length; i++) {
    if (p[i] < 0 || p[i] >= limit) return 0;
  }
  return 1;
}

static napi_value bilinear_i420(napi_env env, napi_callback_info info) {
  size_t argc = 23;
  napi_value argv[23];
  array_t src, out, planes, x0, x1, wx, y0, y1, wy, cx0, cx1, cwx, cy0, cy1, cwy, gain, offset;
  int64_t width, height, ow, line0;
  int quantized;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 21) return fail(env, "bilinearI420: 21 arguments");
  if (!typed(env, argv[0], napi_uint8_array, &src) || !integer(env, argv[1], &width) || !integer(env, argv[2], &height) ||
      !model_input(env, argv[3], &out, &quantized) || !integer(env, argv[4], &ow) || !integer(env, argv[5], &line0) ||
      !typed(env, argv[6], napi_int32_array, &planes) ||
      !typed(env, argv[7], napi_int32_array, &x0) || !typed(env, argv[8], napi_int32_array, &x1) || !typed(env, argv[9], napi_float32_array, &wx) ||
      !typed(env, argv[10], napi_int32_array, &y0) || !typed(env, argv[11], napi_int32_array, &y1) || !typed(env, argv[12], napi_float32_array, &wy) ||
      !typed(env, argv[13], napi_int32_array, &cx0) || !typed(env, argv[14], napi_int32_array, &cx1) || !typed(env, argv[15], napi_float32_array, &cwx) ||
      !typed(env, argv[16], napi_int32_array, &cy0) || !typed(env, argv[17], napi_int32_array, &cy1) || !typed(env, argv[18], napi_float32_array, &cwy) ||
      !typed(env, argv[19], napi_float32_array, &gain) || !typed(env, argv[20], napi_float32_array, &offset)) {
    return fail(env, "bilinearI420: argument of the wrong type");
  }
  float scale, zp;
  if (!number_or(env, argc, argv, 21, 0.0f, &scale) || !number_or(env, argc, argv, 22, 0.0f, &zp)) return fail(env, "bilinearI420: scale and zero point are numbers");
  if (quantized && !quantization_fits(&gain, &offset, scale)) return fail(env, "bilinearI420: a uint8 output needs a quantization scale that fits the values (positive, values / scale below 2^22)");
  const int32_t zero_point = (int32_t)zp;
  const size_t dw = x0.length;
  const size_t dh = y0.length;
  if (width <= 0 || height <= 0 || ow <= 0 || line0 < 0 || (int64_t)dw > ow || planes.length != 3 || gain.length != 3 || offset.length != 3 ||
      x1.length != dw || wx.length != dw || cx0.length != dw || cx1.length != dw || cwx.length != dw ||
      y1.length != dh || wy.length != dh || cy0.length != dh || cy1.length != dh || cwy.length != dh) {
    return fail(env, "bilinearI420: table lengths or sizes do not match");
  }
  const int64_t cw = (width + 1) / 2, ch = (height + 1) / 2;
  const uint64_t u_at = (uint64_t)(width * height), v_at = u_at + (uint64_t)(cw * ch);
  if (v_at + (uint64_t)(cw * ch) > src.length) return fail(env, "bilinearI420: frame smaller than width x height in YUV 4:2:0");
  if (!indices_below(&x0, width) || !indices_below(&x1, width) || !indices_below(&y0, height) || !indices_below(&y1, height) ||
      !indices_below(&cx0, cw) || !indices_below(&cx1, cw) || !indices_below(&cy0, ch) || !indices_below(&cy1, ch)) {
    return fail(env, "bilinearI420: tables reach past the frame");
  }
  const int32_t *pl = planes.data;
  int64_t plane_max = 0;
  for (int c = 0; c < 3; c++) {
    if (pl[c] < 0) return fail(env, "bilinearI420: negative plane offset");
    if (pl[c] > plane_max) plane_max = pl[c];
  }
  if (dh > 0 && (uint64_t)(plane_max + line0 + (int64_t)(dh - 1) * ow + (int64_t)dw) > out.length) {
    return fail(env, "bilinearI420: output too small for the tables");
  }

  /* Separable: per output row, the two source rows of each plane blended into a float row (contiguous, which
   * the compiler vectorises), then per output pixel two reads of each blended row. 768x576 -> 416x416 takes
   * 1.26 ms (0.9 of it the blending, as long as the RGB loop above takes; the rest the conversion); blending
   * each pixel straight from the frame was no faster. */
  /* Blended source rows, then for a uint8 output the three output rows as floats (quantized after each row). */
  float *rows = malloc(sizeof(float) * ((size_t)(width + 2 * cw) + (quantized ? 3 * dw : 0)));
  if (!rows) return fail(env, "bilinearI420: out of memory");
  float *ry = rows, *ru = rows + width, *rv = ru + cw, *tmp = rv + cw;
  const uint8_t *s = src.data, *su = s + u_at, *sv = s + v_at;
  const int32_t *px0 = x0.data, *px1 = x1.data, *py0 = y0.data, *py1 = y1.data;
  const int32_t *pcx0 = cx0.data, *pcx1 = cx1.data, *pcy0 = cy0.data, *pcy1 = cy1.data;
  const float *fwx = wx.data, *fwy = wy.data, *fcwx = cwx.data, *fcwy = cwy.data, *g = gain.data, *off = offset.data;
  for (size_t y = 0; y < dh; y++) {
    const uint8_t *top = s + (size_t)py0[y] * (size_t)width, *bottom = s + (size_t)py1[y] * (size_t)width;
    const float v = fwy[y];
    for (int64_t i = 0; i < width; i++) ry[i] = top[i] + (bottom[i] - top[i]) * v;
    const size_t ctop = (size_t)pcy0[y] * (size_t)cw, cbottom = (size_t)pcy1[y] * (size_t)cw;
    const float cv = fcwy[y];
    for (int64_t i = 0; i < cw; i++) {
      ru[i] = su[ctop + i] + (su[cbottom + i] - su[ctop + i]) * cv;
      rv[i] = sv[ctop + i] + (sv[cbottom + i] - sv[ctop + i]) * cv;
    }
    const size_t line = (size_t)line0 + y * (size_t)ow;
    const row_t row = output_row(quantized, tmp, &out, pl, line, dw);
    float *f0 = row.plane[0], *f1 = row.plane[1], *f2 = row.plane[2];
    const float g0 = g[0], g1 = g[1], g2 = g[2], off0 = off[0], off1 = off[1], off2 = off[2];
    for (size_t x = 0; x < dw; x++) {
      const int32_t a = px0[x], b = px1[x], ca = pcx0[x], cb = pcx1[x];
      const float luma = KY * (ry[a] + (ry[b] - ry[a]) * fwx[x] - 16.0f);
      const float cu = ru[ca] + (ru[cb] - ru[ca]) * fcwx[x] - 128.0f;
      const float cr = rv[ca] + (rv[cb] - rv[ca]) * fcwx[x] - 128.0f;
      const float v0 = clamp255(luma + KRV * cr) * g0 + off0;
      const float v1 = clamp255(luma - KGU * cu - KGV * cr) * g1 + off1;
      const float v2 = clamp255(luma + KBU * cu) * g2 + off2;
      f0[x] = v0; f1[x] = v1; f2[x] = v2;
    }
    finish_row(quantized, &row, &out, pl, line, dw, scale, zero_point);
  }
  free(rows);
  return NULL;
}

/*
 * 1c. A whole I420 frame to RGB24 (evidence images): each chroma sample serves the 2x2 pixels it covers.
 *
 * i420ToRgb(src: Uint8Array, width, height, dst: Uint8Array)
 */
static napi_value i420_to_rgb(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  array_t src, dst;
  int64_t width, height;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) return fail(env, "i420ToRgb: 4 arguments");
  if (!typed(env, argv[0], napi_uint8_array, &src) || !integer(env, argv[1], &width) || !integer(env, argv[2], &height) ||
      !typed(env, argv[3], napi_uint8_array, &dst)) {
    return fail(env, "i420ToRgb: argument of the wrong type");
  }
  if (width <= 0 || height <= 0) return fail(env, "i420ToRgb: width and height must be positive");
  const int64_t cw = (width + 1) / 2, ch = (height + 1) / 2;
  const uint64_t u_at = (uint64_t)(width * height), v_at = u_at + (uint64_t)(cw * ch);
  if (v_at + (uint64_t)(cw * ch) > src.length) return fail(env, "i420ToRgb: frame smaller than width x height in YUV 4:2:0");
  if ((uint64_t)(width * height * 3) > dst.length) return fail(env, "i420ToRgb: output smaller than width x height x 3");
  const uint8_t *s = src.data;
  uint8_t *d = dst.data;
  for (int64_t y = 0; y < height; y++) {
    const uint8_t *row = s + y * width, *ur = s + u_at + (y / 2) * cw, *vr = s + v_at + (y / 2) * cw;
    uint8_t *o = d + y * width * 3;
    for (int64_t x = 0; x < width; x++, o += 3) {
      const float luma = KY * (row[x] - 16.0f), cu = ur[x / 2] - 128.0f, cr = vr[x / 2] - 128.0f;
      o[0] = (uint8_t)(clamp255(luma + KRV * cr) + 0.5f);
      o[1] = (uint8_t)(clamp255(luma - KGU * cu - KGV * cr) + 0.5f);
      o[2] = (uint8_t)(clamp255(luma + KBU * cu) + 0.5f);
    }
  }
  return NULL;
}

/*
 * 2. The first step of decoding a detector output (src/vision/nanodet.ts): for each of `rows` rows of `stride`
 * floats, its best score among the `classes` values starting at `first`, when above `threshold`.
 *
 * bestClasses(out: Float32Array, rows, stride, first, classes, threshold, cells: Int32Array, best: Int32Array,
 *             scores: Float32Array) -> count
 *   Writes the passing rows in order: cells[i] the row, best[i] its class (the first of equal best scores),
 *   scores[i] the score. In the worker this scan of 3549 x 80 scores took 0.3-0.5 ms of JavaScript per frame;
 *   most rows have no score above the threshold, which the first loop finds without branches.
 */
static napi_value best_classes(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  array_t out, cells, best, scores;
  int64_t rows, stride, first, classes;
  double threshold_d;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 9) return fail(env, "bestClasses: 9 arguments");
  if (!typed(env, argv[0], napi_float32_array, &out) || !integer(env, argv[1], &rows) || !integer(env, argv[2], &stride) ||
      !integer(env, argv[3], &first) || !integer(env, argv[4], &classes) ||
      napi_get_value_double(env, argv[5], &threshold_d) != napi_ok || !typed(env, argv[6], napi_int32_array, &cells) ||
      !typed(env, argv[7], napi_int32_array, &best) || !typed(env, argv[8], napi_float32_array, &scores)) {
    return fail(env, "bestClasses: argument of the wrong type");
  }
  if (rows < 0 || stride <= 0 || first < 0 || classes <= 0 || first + classes > stride || (uint64_t)(rows * stride) > out.length ||
      cells.length < (size_t)rows || best.length < (size_t)rows || scores.length < (size_t)rows) {
    return fail(env, "bestClasses: sizes do not match the buffers");
  }
  /* The largest float not above the threshold: for a float v, v > it exactly when v > threshold_d, as the
   * JavaScript comparison (in double) decides. */
  float threshold = (float)threshold_d;
  if ((double)threshold > threshold_d) {
    uint32_t bits;
    memcpy(&bits, &threshold, sizeof bits);
    if (threshold > 0) bits--;
    else if (threshold < 0) bits++;
    else bits = 0x80000001u; /* the negative float nearest zero */
    memcpy(&threshold, &bits, sizeof bits);
  }
  const float *o = out.data;
  int32_t *pc = cells.data, *pb = best.data;
  float *ps = scores.data;
  int32_t n = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float *row = o + r * stride + first;
    int any = 0;
    for (int64_t c = 0; c < classes; c++) any |= row[c] > threshold;
    if (!any) continue;
    float top = threshold;
    int32_t arg = -1;
    for (int64_t c = 0; c < classes; c++) {
      if (row[c] > top) {
        top = row[c];
        arg = (int32_t)c;
      }
    }
    pc[n] = (int32_t)r;
    pb[n] = arg;
    ps[n] = top;
    n++;
  }
  napi_value result;
  napi_create_int32(env, n, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "bilinear", NAPI_AUTO_LENGTH, bilinear, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "bilinear", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "bilinearI420", NAPI_AUTO_LENGTH, bilinear_i420, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "bilinearI420", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "i420ToRgb", NAPI_AUTO_LENGTH, i420_to_rgb, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "i420ToRgb", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "bestClasses", NAPI_AUTO_LENGTH, best_classes, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "bestClasses", fn) != napi_ok) return NULL;
  return exports;
}
