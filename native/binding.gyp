{
  "targets": [
    {
      "target_name": "loom_native",
      "sources": ["src/loom.cc", "src/gemm.cc", "src/conv.cc", "src/elementwise.cc", "src/copy.cc", "src/rows.cc", "src/attention.cc", "src/int8.cc", "src/bf16.cc"],
      "cflags_cc": ["-O3", "-std=c++17", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast", "-pthread"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "ldflags": ["-pthread"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
