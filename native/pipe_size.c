/*
 * The pipe that carries a camera's raw frames from ffmpeg, sized to hold a whole frame.
 *
 * Node's child_process gives a child's stdout as a UNIX socket pair, whose send buffer (~208 KiB) a 768x576 RGB
 * frame (1.3 MB) crosses in several refills, each waking the agent's main thread and then ffmpeg again; a plain
 * pipe holds 64 KiB, ~21 refills. A pipe sized with F_SETPIPE_SZ to a frame takes it in one write and gives it in
 * one read (docs/decisions.md, "Frames through a pipe the size of a frame").
 */
/* pipe2() and F_SETPIPE_SZ are Linux-specific: unistd.h and fcntl.h declare them under _GNU_SOURCE. */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/*
 * framePipe(bytes): [readFd, writeFd, size] of a new close-on-exec pipe whose size was asked to be `bytes`
 * (size: what the kernel gave, or -errno when it refused the resize and the pipe kept its default), or -errno
 * when no pipe could be made.
 */
static napi_value frame_pipe(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value result;
  int64_t bytes = 0;
  int fds[2];
  int size;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int64(env, argv[0], &bytes) != napi_ok || bytes <= 0 || bytes > 0x7fffffff) {
    napi_throw_range_error(env, NULL, "framePipe(bytes): a positive byte count below 2 GiB");
    return NULL;
  }
  if (pipe2(fds, O_CLOEXEC) != 0) {
    napi_create_int32(env, -errno, &result);
    return result;
  }
  size = fcntl(fds[0], F_SETPIPE_SZ, (int)bytes);
  if (size < 0) size = -errno;
  napi_value items[3];
  napi_create_array_with_length(env, 3, &result);
  napi_create_int32(env, fds[0], &items[0]);
  napi_create_int32(env, fds[1], &items[1]);
  napi_create_int32(env, size, &items[2]);
  for (uint32_t i = 0; i < 3; i++) napi_set_element(env, result, i, items[i]);
  return result;
}

/* setPipeSize(fd, bytes): the pipe's size afterwards in bytes, or -errno when the kernel refused. */
static napi_value set_pipe_size(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_value result;
  int32_t fd = -1;
  int64_t bytes = 0;
  int size;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &bytes) != napi_ok ||
      fd < 0 || bytes <= 0 || bytes > 0x7fffffff) {
    napi_throw_range_error(env, NULL, "setPipeSize(fd, bytes): a file descriptor and a positive byte count below 2 GiB");
    return NULL;
  }
  size = fcntl(fd, F_SETPIPE_SZ, (int)bytes);
  if (size < 0) size = -errno;
  napi_create_int32(env, size, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "framePipe", NAPI_AUTO_LENGTH, frame_pipe, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "framePipe", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "setPipeSize", NAPI_AUTO_LENGTH, set_pipe_size, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "setPipeSize", fn) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE_INIT() {
  return init(env, exports);
}
