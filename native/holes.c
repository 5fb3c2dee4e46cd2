// Finds data and holes in a sparse file with lseek(SEEK_DATA / SEEK_HOLE), so
// that a backup can skip the holes of a disk image without reading them.
// Built from source by node-gyp during `npm ci` (binding.gyp at the repo root)
// and loaded by src/source/holes.ts, which falls back to reading everything
// when this addon is missing. Only Node-API (node_api.h) is used: the binary
// works with every Node version that has Node-API 8.
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include <node_api.h>

/* The errno names a caller may want to tell apart; others are reported by number. */
static const char *errno_name(int error) {
  switch (error) {
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ENXIO: return "ENXIO";
    case EOVERFLOW: return "EOVERFLOW";
    case ESPIPE: return "ESPIPE";
    case EIO: return "EIO";
    default: return "ESEEK";
  }
}

/* Throws a JS Error whose `code` is the errno name and `errno` the number. */
static napi_value throw_errno(napi_env env, int error, const char *call) {
  char message[160];
  snprintf(message, sizeof message, "%s failed: %s", call, strerror(error));
  napi_value code, text, err, number;
  napi_create_string_utf8(env, errno_name(error), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &err);
  napi_create_int32(env, error, &number);
  napi_set_named_property(env, err, "errno", number);
  napi_throw(env, err);
  return NULL;
}

/*
 * seek(fd, offset) with `whence`: the offset lseek finds, or -1 when there is
 * no such place at or after `offset` (ENXIO: only a hole up to the end, or
 * offset at or past the end). Moves the descriptor's file position, which
 * positioned reads (pread) do not use.
 */
static napi_value seek(napi_env env, napi_callback_info info, int whence, const char *call) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected (fd, offset)");
    return NULL;
  }
  int32_t fd;
  double offset;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_double(env, argv[1], &offset) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "fd and offset must be numbers");
    return NULL;
  }
  /* 2^53: the largest offset a JS number holds exactly. */
  if (fd < 0 || !(offset >= 0) || offset > 9007199254740992.0 || offset != (double)(int64_t)offset) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "fd must be >= 0 and offset a whole number of bytes >= 0");
    return NULL;
  }
  off_t found = lseek(fd, (off_t)offset, whence);
  if (found < 0) {
    if (errno == ENXIO) found = -1;
    else return throw_errno(env, errno, call);
  }
  napi_value result;
  napi_create_double(env, (double)found, &result);
  return result;
}

static napi_value next_data(napi_env env, napi_callback_info info) {
  return seek(env, info, SEEK_DATA, "lseek(SEEK_DATA)");
}

static napi_value next_hole(napi_env env, napi_callback_info info) {
  return seek(env, info, SEEK_HOLE, "lseek(SEEK_HOLE)");
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
    {"nextData", NULL, next_data, NULL, NULL, NULL, napi_enumerable, NULL},
    {"nextHole", NULL, next_hole, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
