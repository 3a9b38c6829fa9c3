/*
 * loom_mpi: a thin N-API binding to MPI (built with mpicc against Open MPI; any MPI-3 library should do).
 *
 * Every call is blocking and runs on the JavaScript thread, so MPI is initialised with MPI_THREAD_FUNNELED.
 * Buffers are typed arrays (Float32Array, Float64Array, Int32Array) operated on in place. Communicators are
 * small integers: 0 is MPI_COMM_WORLD, `split` adds more. Errors are returned (MPI_ERRORS_RETURN) and thrown as
 * JavaScript errors naming the call. `free` releases a communicator `split` made (MPI_Comm_free) and its id is
 * taken again by a later `split`, so a long process that makes and frees groups stays within MAX_COMMS.
 */
#include <mpi.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>

#define MAX_COMMS 64
/* comms[i] for i < n_comms: a live communicator, or MPI_COMM_NULL once freed (the slot is free for `split`). */
static MPI_Comm comms[MAX_COMMS];
static int n_comms = 0;

#define CHECK_NAPI(call)                                                      \
  do {                                                                        \
    if ((call) != napi_ok) {                                                  \
      napi_throw_error(env, NULL, "loom_mpi: N-API call failed: " #call);     \
      return NULL;                                                            \
    }                                                                         \
  } while (0)

/* Throws "MPI_<name> failed: <MPI's error string>" and returns 0 when rc is not MPI_SUCCESS. */
static int mpi_ok(napi_env env, int rc, const char *name) {
  if (rc == MPI_SUCCESS) return 1;
  char msg[MPI_MAX_ERROR_STRING + 64];
  char err[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, err, &len);
  snprintf(msg, sizeof msg, "loom_mpi: MPI_%s failed: %.*s", name, len, err);
  napi_throw_error(env, NULL, msg);
  return 0;
}

static int get_int(napi_env env, napi_value v, int *out, const char *what) {
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "loom_mpi: %s must be an integer", what);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

static int get_comm(napi_env env, napi_value v, MPI_Comm *out) {
  int i;
  if (!get_int(env, v, &i, "communicator")) return 0;
  if (i < 0 || i >= n_comms) {
    napi_throw_range_error(env, NULL, "loom_mpi: unknown communicator");
    return 0;
  }
  if (comms[i] == MPI_COMM_NULL) {
    napi_throw_range_error(env, NULL, "loom_mpi: communicator was freed");
    return 0;
  }
  *out = comms[i];
  return 1;
}

/* A typed array's data, element count and MPI datatype. */
static int get_buffer(napi_env env, napi_value v, void **data, int *count, MPI_Datatype *type) {
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta) {
    napi_throw_type_error(env, NULL, "loom_mpi: expected a Float32Array, Float64Array or Int32Array");
    return 0;
  }
  napi_typedarray_type t;
  size_t length;
  if (napi_get_typedarray_info(env, v, &t, &length, data, NULL, NULL) != napi_ok) return 0;
  switch (t) {
    case napi_float32_array: *type = MPI_FLOAT; break;
    case napi_float64_array: *type = MPI_DOUBLE; break;
    case napi_int32_array: *type = MPI_INT; break;
    default:
      napi_throw_type_error(env, NULL, "loom_mpi: expected a Float32Array, Float64Array or Int32Array");
      return 0;
  }
  if (length > 0x7fffffff) {
    napi_throw_range_error(env, NULL, "loom_mpi: buffer longer than 2^31-1 elements");
    return 0;
  }
  *count = (int)length;
  return 1;
}

static napi_value args_of(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "loom_mpi: too few arguments");
    return NULL;
  }
  return argv[0];
}

static napi_value make_int(napi_env env, int v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

static napi_value undefined(napi_env env) {
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}

/* init() -> { rank, size, threadLevel, library }: MPI_Init_thread once (later calls report the same world). */
static napi_value init(napi_env env, napi_callback_info info) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized) {
    napi_throw_error(env, NULL, "loom_mpi: MPI was already finalized in this process");
    return NULL;
  }
  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    if (!mpi_ok(env, MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "Init_thread")) return NULL;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    comms[0] = MPI_COMM_WORLD;
    n_comms = 1;
  } else {
    MPI_Query_thread(&provided);
  }
  int rank, size, len;
  char lib[MPI_MAX_LIBRARY_VERSION_STRING];
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Get_library_version(lib, &len);
  while (len > 0 && (lib[len - 1] == '\n' || lib[len - 1] == '\0')) len--;
  char *nl = memchr(lib, '\n', (size_t)len); /* first line only */
  if (nl) len = (int)(nl - lib);
  napi_value o, s;
  CHECK_NAPI(napi_create_object(env, &o));
  napi_set_named_property(env, o, "rank", make_int(env, rank));
  napi_set_named_property(env, o, "size", make_int(env, size));
  napi_set_named_property(env, o, "threadLevel", make_int(env, provided));
  CHECK_NAPI(napi_create_string_utf8(env, lib, (size_t)len, &s));
  napi_set_named_property(env, o, "library", s);
  return o;
}

/* allReduce(comm, buffer): element-wise sum over the communicator, in place. */
static napi_value all_reduce(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args_of(env, info, 2, argv)) return NULL;
  MPI_Comm comm; void *data; int count; MPI_Datatype type;
  if (!get_comm(env, argv[0], &comm) || !get_buffer(env, argv[1], &data, &count, &type)) return NULL;
  if (!mpi_ok(env, MPI_Allreduce(MPI_IN_PLACE, data, count, type, MPI_SUM, comm), "Allreduce")) return NULL;
  return undefined(env);
}

/*
 * reduceScatterBlock(comm, send, recv): MPI_Reduce_scatter_block with MPI_SUM. `send` holds size blocks of
 * recv.length elements; rank r receives the element-wise sum over ranks of block r (ZeRO's gradient reduction).
 */
static napi_value reduce_scatter_block(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args_of(env, info, 3, argv)) return NULL;
  MPI_Comm comm; void *sdata, *rdata; int scount, rcount, size; MPI_Datatype stype, rtype;
  if (!get_comm(env, argv[0], &comm) || !get_buffer(env, argv[1], &sdata, &scount, &stype) || !get_buffer(env, argv[2], &rdata, &rcount, &rtype)) return NULL;
  MPI_Comm_size(comm, &size);
  if (stype != rtype || (long long)rcount * size != scount) {
    napi_throw_range_error(env, NULL, "loom_mpi: reduceScatterBlock: send must be size x recv.length elements of the same type");
    return NULL;
  }
  if (!mpi_ok(env, MPI_Reduce_scatter_block(sdata, rdata, rcount, rtype, MPI_SUM, comm), "Reduce_scatter_block")) return NULL;
  return undefined(env);
}

/* allGather(comm, send, recv): MPI_Allgather; recv holds size blocks of send.length elements, block r from rank r. */
static napi_value all_gather(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args_of(env, info, 3, argv)) return NULL;
  MPI_Comm comm; void *sdata, *rdata; int scount, rcount, size; MPI_Datatype stype, rtype;
  if (!get_comm(env, argv[0], &comm) || !get_buffer(env, argv[1], &sdata, &scount, &stype) || !get_buffer(env, argv[2], &rdata, &rcount, &rtype)) return NULL;
  MPI_Comm_size(comm, &size);
  if (stype != rtype || (long long)scount * size != rcount) {
    napi_throw_range_error(env, NULL, "loom_mpi: allGather: recv must be size x send.length elements of the same type");
    return NULL;
  }
  if (!mpi_ok(env, MPI_Allgather(sdata, scount, stype, rdata, scount, rtype, comm), "Allgather")) return NULL;
  return undefined(env);
}

/* broadcast(comm, buffer, root) */
static napi_value broadcast(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args_of(env, info, 3, argv)) return NULL;
  MPI_Comm comm; void *data; int count, root; MPI_Datatype type;
  if (!get_comm(env, argv[0], &comm) || !get_buffer(env, argv[1], &data, &count, &type) || !get_int(env, argv[2], &root, "root")) return NULL;
  if (!mpi_ok(env, MPI_Bcast(data, count, type, root, comm), "Bcast")) return NULL;
  return undefined(env);
}

/* barrier(comm) */
static napi_value barrier(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  MPI_Comm comm;
  if (!get_comm(env, argv[0], &comm)) return NULL;
  if (!mpi_ok(env, MPI_Barrier(comm), "Barrier")) return NULL;
  return undefined(env);
}

/* send(comm, buffer, dest, tag) */
static napi_value send(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args_of(env, info, 4, argv)) return NULL;
  MPI_Comm comm; void *data; int count, dest, tag; MPI_Datatype type;
  if (!get_comm(env, argv[0], &comm) || !get_buffer(env, argv[1], &data, &count, &type) || !get_int(env, argv[2], &dest, "dest") || !get_int(env, argv[3], &tag, "tag")) return NULL;
  if (!mpi_ok(env, MPI_Send(data, count, type, dest, tag, comm), "Send")) return NULL;
  return undefined(env);
}

/* recv(comm, buffer, source, tag): throws unless exactly buffer.length elements arrived. */
static napi_value recv(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args_of(env, info, 4, argv)) return NULL;
  MPI_Comm comm; void *data; int count, source, tag, got = 0; MPI_Datatype type; MPI_Status status;
  if (!get_comm(env, argv[0], &comm) || !get_buffer(env, argv[1], &data, &count, &type) || !get_int(env, argv[2], &source, "source") || !get_int(env, argv[3], &tag, "tag")) return NULL;
  if (!mpi_ok(env, MPI_Recv(data, count, type, source, tag, comm, &status), "Recv")) return NULL;
  MPI_Get_count(&status, type, &got);
  if (got != count) {
    char msg[160];
    snprintf(msg, sizeof msg, "loom_mpi: recv from rank %d tag %d: expected %d elements, got %d", source, tag, count, got);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  return undefined(env);
}

/*
 * split(comm, color, key) -> new communicator id (MPI_Comm_split; ranks with the same color share one): the lowest
 * id a `free` released, else the next one.
 */
static napi_value split(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args_of(env, info, 3, argv)) return NULL;
  MPI_Comm comm, out; int color, key;
  if (!get_comm(env, argv[0], &comm) || !get_int(env, argv[1], &color, "color") || !get_int(env, argv[2], &key, "key")) return NULL;
  int slot = 1;
  while (slot < n_comms && comms[slot] != MPI_COMM_NULL) slot++;
  if (slot >= MAX_COMMS) {
    napi_throw_range_error(env, NULL, "loom_mpi: too many communicators (free those no longer used)");
    return NULL;
  }
  if (!mpi_ok(env, MPI_Comm_split(comm, color, key, &out), "Comm_split")) return NULL;
  MPI_Comm_set_errhandler(out, MPI_ERRORS_RETURN);
  comms[slot] = out;
  if (slot == n_comms) n_comms++;
  int rank, size;
  MPI_Comm_rank(out, &rank);
  MPI_Comm_size(out, &size);
  napi_value o;
  CHECK_NAPI(napi_create_object(env, &o));
  napi_set_named_property(env, o, "comm", make_int(env, slot));
  napi_set_named_property(env, o, "rank", make_int(env, rank));
  napi_set_named_property(env, o, "size", make_int(env, size));
  return o;
}

/*
 * free(comm): MPI_Comm_free of a communicator `split` made (collective over its ranks); using it afterwards throws
 * until a later `split` takes its id. MPI_COMM_WORLD (0) is not freed: MPI_Finalize ends it.
 */
static napi_value free_comm(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  MPI_Comm comm;
  int i;
  if (!get_comm(env, argv[0], &comm) || !get_int(env, argv[0], &i, "communicator")) return NULL;
  if (i == 0) {
    napi_throw_range_error(env, NULL, "loom_mpi: MPI_COMM_WORLD is not freed (MPI_Finalize ends it)");
    return NULL;
  }
  if (!mpi_ok(env, MPI_Comm_free(&comms[i]), "Comm_free")) return NULL;
  comms[i] = MPI_COMM_NULL;
  return undefined(env);
}

/* abort(code): MPI_Abort on the world; the launcher then ends every rank. Does not return. */
static napi_value abort_job(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  int code = 1;
  get_int(env, argv[0], &code, "code");
  fflush(stdout);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  return undefined(env);
}

/* finalize(): MPI_Finalize once; later calls do nothing. */
static napi_value finalize(napi_env env, napi_callback_info info) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized && !mpi_ok(env, MPI_Finalize(), "Finalize")) return NULL;
  return undefined(env);
}

/* finalized() -> whether MPI_Finalize has run. */
static napi_value finalized(napi_env env, napi_callback_info info) {
  int f = 0;
  MPI_Finalized(&f);
  napi_value r;
  napi_get_boolean(env, f != 0, &r);
  return r;
}

static napi_value module_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"init", NULL, init, NULL, NULL, NULL, napi_default, NULL},
    {"allReduce", NULL, all_reduce, NULL, NULL, NULL, napi_default, NULL},
    {"reduceScatterBlock", NULL, reduce_scatter_block, NULL, NULL, NULL, napi_default, NULL},
    {"allGather", NULL, all_gather, NULL, NULL, NULL, napi_default, NULL},
    {"broadcast", NULL, broadcast, NULL, NULL, NULL, napi_default, NULL},
    {"barrier", NULL, barrier, NULL, NULL, NULL, napi_default, NULL},
    {"send", NULL, send, NULL, NULL, NULL, napi_default, NULL},
    {"recv", NULL, recv, NULL, NULL, NULL, napi_default, NULL},
    {"split", NULL, split, NULL, NULL, NULL, napi_default, NULL},
    {"free", NULL, free_comm, NULL, NULL, NULL, napi_default, NULL},
    {"abort", NULL, abort_job, NULL, NULL, NULL, napi_default, NULL},
    {"finalize", NULL, finalize, NULL, NULL, NULL, napi_default, NULL},
    {"finalized", NULL, finalized, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, module_init)
