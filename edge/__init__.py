"""The on-device runtime: run-dir formats and manifests, tokenizer and chat template, generators,
server, latency recording and the `orin-unlearn` CLI. Imports without torch."""
