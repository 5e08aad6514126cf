/*
 * CPU affinity for the agent's threads: the detector's inference thread gets cores of its own, and the rest of
 * the agent (main thread, V8 and libuv helpers, and the ffmpeg processes it starts later) the other cores.
 * Without it, ffmpeg and the main thread's wake-ups were now and then scheduled onto the core running the
 * inference and took it from the model mid-run: pinned, the detector ran 3-17 % more inferences a second beside
 * the same camera load (docs/decisions.md, "A core for the inference").
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

/* threadId(): the calling thread's kernel thread id. */
static napi_value thread_id(napi_env env, napi_callback_info info) {
  napi_value result;
  (void)info;
  napi_create_int32(env, (int32_t)syscall(SYS_gettid), &result);
  return result;
}

/* Reads up to *argc arguments into argv (*argc: how many came) and the first, a thread id >= 0, into *tid. */
static bool thread_args(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, int32_t *tid) {
  return napi_get_cb_info(env, info, argc, argv, NULL, NULL) == napi_ok && *argc >= 1 &&
         napi_get_value_int32(env, argv[0], tid) == napi_ok && *tid >= 0;
}

/* getAffinity(tid): the CPUs thread `tid` (0: the calling thread) may run on, or -errno. */
static napi_value get_affinity(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value result;
  int32_t tid = -1;
  cpu_set_t set;
  if (!thread_args(env, info, &argc, argv, &tid)) {
    napi_throw_range_error(env, NULL, "getAffinity(tid): a thread id, or 0 for the calling thread");
    return NULL;
  }
  CPU_ZERO(&set);
  if (sched_getaffinity((pid_t)tid, sizeof set, &set) != 0) {
    napi_create_int32(env, -errno, &result);
    return result;
  }
  napi_create_array(env, &result);
  uint32_t n = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
    if (!CPU_ISSET(cpu, &set)) continue;
    napi_value v;
    napi_create_int32(env, cpu, &v);
    napi_set_element(env, result, n++, v);
  }
  return result;
}

/* setAffinity(tid, cpus): lets thread `tid` (0: the calling thread) run only on `cpus`; 0, or -errno. */
static napi_value set_affinity(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_value result;
  int32_t tid = -1;
  uint32_t length = 0;
  bool is_array = false;
  cpu_set_t set;
  if (!thread_args(env, info, &argc, argv, &tid) || argc < 2 ||
      napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[1], &length) != napi_ok || length == 0) {
    napi_throw_range_error(env, NULL, "setAffinity(tid, cpus): a thread id (0: the calling thread) and a non-empty array of CPU numbers");
    return NULL;
  }
  CPU_ZERO(&set);
  for (uint32_t i = 0; i < length; i++) {
    napi_value v;
    int32_t cpu = -1;
    if (napi_get_element(env, argv[1], i, &v) != napi_ok || napi_get_value_int32(env, v, &cpu) != napi_ok ||
        cpu < 0 || cpu >= CPU_SETSIZE) {
      napi_throw_range_error(env, NULL, "setAffinity(tid, cpus): CPU numbers are integers from 0 to 1023");
      return NULL;
    }
    CPU_SET(cpu, &set);
  }
  napi_create_int32(env, sched_setaffinity((pid_t)tid, sizeof set, &set) == 0 ? 0 : -errno, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "threadId", NAPI_AUTO_LENGTH, thread_id, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "threadId", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "getAffinity", NAPI_AUTO_LENGTH, get_affinity, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "getAffinity", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "setAffinity", NAPI_AUTO_LENGTH, set_affinity, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "setAffinity", fn) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE_INIT() {
  return init(env, exports);
}
