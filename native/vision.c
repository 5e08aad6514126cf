/*
 * Two loops of the frame path in C (src/vision/native.ts loads them; docs/decisions.md, "Preprocessing in C"):
 *
 * 1. The detector's bilinear resize + normalisation (src/vision/preprocess.ts, `runBilinear`): an RGB24 frame to
 * the model's planar float input. The JavaScript loop took 2-3 ms of the main thread per 768x576 frame, the
 * largest part of the frame path's work beside the inference.
 *
 * The caller computes the sampling tables (preprocess.ts `bilinearTable`), so both paths sample the same source
 * pixels with the same weights; this file only runs the loop. Every index the tables can produce is checked
 * against the buffers before the loop, so a wrong call throws instead of reading or writing out of bounds.
 *
 * bilinear(src: Uint8Array, srcStride, out: Float32Array, outWidth, line0, planes: Int32Array[3],
 *          x0: Int32Array, x1: Int32Array, wx: Float32Array, y0: Int32Array, y1: Int32Array, wy: Float32Array,
 *          gain: Float32Array[3], offset: Float32Array[3])
 *   x0/x1: per output column the byte offset in a row of the left/right source pixel; wx the right one's weight.
 *   y0/y1: per output row the source row above/below; wy the lower one's weight.
 *   Output row y, column x, channel c goes to out[planes[c] + line0 + y * outWidth + x].
 */
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
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

static int integer(napi_env env, napi_value v, int64_t *out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

static napi_value fail(napi_env env, const char *message) {
  napi_throw_range_error(env, NULL, message);
  return NULL;
}

static napi_value bilinear(napi_env env, napi_callback_info info) {
  size_t argc = 14;
  napi_value argv[14];
  array_t src, out, planes, x0, x1, wx, y0, y1, wy, gain, offset;
  int64_t stride, width, line0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 14) return fail(env, "bilinear: 14 arguments");
  if (!typed(env, argv[0], napi_uint8_array, &src) || !integer(env, argv[1], &stride) ||
      !typed(env, argv[2], napi_float32_array, &out) || !integer(env, argv[3], &width) || !integer(env, argv[4], &line0) ||
      !typed(env, argv[5], napi_int32_array, &planes) || !typed(env, argv[6], napi_int32_array, &x0) ||
      !typed(env, argv[7], napi_int32_array, &x1) || !typed(env, argv[8], napi_float32_array, &wx) ||
      !typed(env, argv[9], napi_int32_array, &y0) || !typed(env, argv[10], napi_int32_array, &y1) ||
      !typed(env, argv[11], napi_float32_array, &wy) || !typed(env, argv[12], napi_float32_array, &gain) ||
      !typed(env, argv[13], napi_float32_array, &offset)) {
    return fail(env, "bilinear: argument of the wrong type");
  }
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
  float *o = out.data;
  const float *fwx = wx.data, *fwy = wy.data, *g = gain.data, *off = offset.data;
  for (size_t y = 0; y < dh; y++) {
    const uint8_t *top = s + (size_t)py0[y] * (size_t)stride;
    const uint8_t *bottom = s + (size_t)py1[y] * (size_t)stride;
    const float v = fwy[y];
    const size_t line = (size_t)line0 + y * (size_t)width;
    float *o0 = o + pl[0] + line, *o1 = o + pl[1] + line, *o2 = o + pl[2] + line;
    for (size_t x = 0; x < dw; x++) {
      const uint8_t *a = top + px0[x], *b = top + px1[x], *c = bottom + px0[x], *d = bottom + px1[x];
      const float w = fwx[x];
      float u = a[0] + (b[0] - a[0]) * w, l = c[0] + (d[0] - c[0]) * w;
      o0[x] = (u + (l - u) * v) * g[0] + off[0];
      u = a[1] + (b[1] - a[1]) * w; l = c[1] + (d[1] - c[1]) * w;
      o1[x] = (u + (l - u) * v) * g[1] + off[1];
      u = a[2] + (b[2] - a[2]) * w; l = c[2] + (d[2] - c[2]) * w;
      o2[x] = (u + (l - u) * v) * g[2] + off[2];
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
  if (napi_create_function(env, "bestClasses", NAPI_AUTO_LENGTH, best_classes, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "bestClasses", fn) != napi_ok) return NULL;
  return exports;
}
