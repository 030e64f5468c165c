#!/usr/bin/env bash
# Prints a Python >= 3.11 to build the venv with: 3.12 (the Lambda runtime) when there is one.
# A pyenv shim for a version that is installed but not selected fails when run, so each candidate
# is tried, and pyenv's own installs are looked at directly.
set -u
candidates=(python3.12)
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin; do
    [ -x "$dir/python3.12" ] && candidates+=("$dir/python3.12")
done
candidates+=(python3.11 python3)
for candidate in "${candidates[@]}"; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
        command -v "$candidate"
        exit 0
    fi
done
echo "no Python 3.11 or newer found: install Python 3.12 (the Lambda runtime) and run make again" >&2
exit 1
