/*
 * mallopt() for the agent process: fixed glibc malloc mmap and trim thresholds, and a top pad.
 *
 * With glibc's defaults, onnxruntime in the detector's worker thread (a non-main malloc arena) gave memory back
 * to the kernel after every inference and faulted it in again on the next: ~300 minor page faults per inference
 * and 30-50 % slower inference than on the main thread (docs/decisions.md, "Page faults in the worker").
 * Fixed thresholds keep blocks up to the threshold in the heap and stop most of the trimming. The top pad stops
 * the rest: the 1.7 MB output buffer of every inference lives until V8 collects it, so tens of MB of them are
 * freed at once; a thread arena then deletes whole 64 MiB heaps whatever the trim threshold (glibc heap_trim keeps
 * one only when the pad asks for it), and the main arena trims above the threshold down to the pad
 * (docs/decisions.md, "Page faults inside session.run"). mallopt() settings are process-wide, so one call covers
 * every thread and arena, also those created later.
 */
#include <node_api.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static napi_value tune(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_value result;
  int64_t mmap_threshold = 0;
  int64_t trim_threshold = 0;
  int64_t top_pad = -1;
  int ok = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_int64(env, argv[0], &mmap_threshold) != napi_ok ||
      napi_get_value_int64(env, argv[1], &trim_threshold) != napi_ok ||
      napi_get_value_int64(env, argv[2], &top_pad) != napi_ok ||
      mmap_threshold <= 0 || trim_threshold <= 0 || top_pad < 0 ||
      mmap_threshold > 0x7fffffff || trim_threshold > 0x7fffffff || top_pad > 0x7fffffff) {
    napi_throw_range_error(env, NULL, "tune(mmapThreshold, trimThreshold, topPad): positive byte counts (topPad may be 0) below 2 GiB");
    return NULL;
  }
#ifdef __GLIBC__
  /* mallopt returns 1 on success; each call is tried so a refused one does not hide another. */
  ok = mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold) == 1;
  ok = (mallopt(M_TRIM_THRESHOLD, (int)trim_threshold) == 1) && ok;
  ok = (mallopt(M_TOP_PAD, (int)top_pad) == 1) && ok;
#endif
  napi_get_boolean(env, ok, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "tune", NAPI_AUTO_LENGTH, tune, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "tune", fn) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE_INIT() {
  return init(env, exports);
}
