{
  "targets": [
    {
      "target_name": "loom_mpi",
      "sources": ["src/mpi.c"],
      "cflags": ["-O2", "-std=c11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
