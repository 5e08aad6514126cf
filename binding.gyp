{
  "targets": [
    {
      "target_name": "malloc_tune",
      "sources": ["native/malloc_tune.c"]
    },
    {
      "target_name": "vision",
      "sources": ["native/vision.c"],
      "cflags": ["-O3"]
    },
    {
      "target_name": "sched",
      "sources": ["native/sched.c"]
    },
    {
      "target_name": "notify",
      "sources": ["native/notify.c"]
    }
  ]
}
