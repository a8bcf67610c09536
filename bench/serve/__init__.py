"""`bench serve`: load against an OpenAI-compatible server (vLLM, llama.cpp, Ollama) at rising concurrency.

The modules, in the order data flows: `server` starts and stops a server bench owns;
`prompts` builds prompts of a token length; `client` streams one request and times it;
`load` drives a level (a concurrency or a Poisson request rate); `summary` turns a level's
requests into percentiles, throughput and goodput; `job` runs a sweep and writes its record;
`verdict` decides "responsive" claims from serve records.
"""
