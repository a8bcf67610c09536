"""A probe that runs a `bench` command in a fresh interpreter and reports which engine modules it imported:
quick commands must import none of them."""

HEAVY = ("torch", "transformers", "vllm")
PROBE = """
import json, sys
from bench.cli import main
sys.argv = ["bench", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy})
print("\\n" + json.dumps({{"code": code, "heavy": heavy}}))
"""
