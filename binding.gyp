{
  "targets": [
    {
      "target_name": "malloc_tune",
      "sources": ["native/malloc_tune.c"]
    },
    {
      "target_name": "preprocess",
      "sources": ["native/preprocess.c"],
      "cflags": ["-O3"]
    }
  ]
}
