"""`python -m benchmark.run.perf`, kept working: the command lives in benchmark.tools.perf
(run as a module by name, so the application layer does not import the tools above it)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("benchmark.tools.perf", run_name="__main__", alter_sys=True)
