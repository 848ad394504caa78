#!/usr/bin/env python
"""Continual fine-tuning benchmark (LDIFS, Mukhoti et al., TMLR 2024). See README.md."""

import sys

from benchmark.run.cli import main

if __name__ == "__main__":
    sys.exit(main())
