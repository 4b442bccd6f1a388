#!/usr/bin/env bash
# The load benchmark is bench.py beside this file (what it does and its knobs: its docstring).
exec python3 "$(dirname "${BASH_SOURCE[0]}")/bench.py" "$@"
