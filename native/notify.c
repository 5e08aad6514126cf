/*
 * sd_notify for the agent without libsystemd: one datagram to the unix socket systemd names in NOTIFY_SOCKET
 * (READY=1, STATUS=..., WATCHDOG=1, STOPPING=1; src/components/systemd.ts). Node has no unix datagram sockets,
 * and spawning systemd-notify per watchdog ping would come from another pid, which NotifyAccess=main ignores.
 */
#include <node_api.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_TEXT 4096

/* Sends `text` to `path` (a leading '@': an abstract socket). 0, or -errno. */
static int send_notify(const char *path, size_t path_len, const char *text, size_t text_len) {
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path_len == 0 || (path[0] != '/' && path[0] != '@')) return -EINVAL;
  if (path_len >= sizeof addr.sun_path) return -ENAMETOOLONG;
  memcpy(addr.sun_path, path, path_len);
  /* An abstract address is exactly its bytes (no NUL at the end); a path one ends at its NUL. */
  socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len + (path[0] == '@' ? 0 : 1));
  if (path[0] == '@') addr.sun_path[0] = '\0';
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  ssize_t sent = sendto(fd, text, text_len, MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len);
  int result = sent < 0 ? -errno : (size_t)sent == text_len ? 0 : -EMSGSIZE;
  close(fd);
  return result;
}

/* notify(socketPath, text): 0, or -errno (e.g. -ENOENT: no socket at the path; -ECONNREFUSED: nobody bound it). */
static napi_value notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_value result;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  char text[MAX_TEXT + 1];
  size_t path_len = 0;
  size_t text_len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], text, sizeof text, &text_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "notify(socketPath, text): two strings");
    return NULL;
  }
  /* A string at the buffer's limit may have been cut: refuse it rather than send something else. */
  if (path_len >= sizeof path - 1) {
    napi_create_int32(env, -ENAMETOOLONG, &result);
    return result;
  }
  if (text_len >= MAX_TEXT) {
    napi_create_int32(env, -EMSGSIZE, &result);
    return result;
  }
  napi_create_int32(env, send_notify(path, path_len, text, text_len), &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "notify", NAPI_AUTO_LENGTH, notify, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "notify", fn) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE_INIT() {
  return init(env, exports);
}
