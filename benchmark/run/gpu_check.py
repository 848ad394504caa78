"""`python -m benchmark.run.gpu_check`, kept working: the command lives in benchmark.tools.gpu_check
(run as a module by name, so the application layer does not import the tools above it)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("benchmark.tools.gpu_check", run_name="__main__", alter_sys=True)
