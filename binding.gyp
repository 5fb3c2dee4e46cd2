{
  "targets": [
    {
      "target_name": "holes",
      "sources": ["native/holes.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
