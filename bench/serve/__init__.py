"""`bench serve`: load against an OpenAI-compatible server (vLLM, llama.cpp, Ollama) at rising concurrency.

The modules, in the order data flows: `wire` reads a server's answers as untrusted input (one deadline
per call, size caps, shape checks); `server` starts and stops a server bench owns;
`prompts` builds prompts of a token length; `client` streams one request and times it;
`load` drives a level (a concurrency or a Poisson request rate); `summary` turns a level's
requests into percentiles, throughput and goodput; `measure` runs the load levels and writes
their record; `command` is the CLI's entry. Serve records are decided on by
`bench.verdicts.responsive` and shown by `bench.report.serve`.
"""
