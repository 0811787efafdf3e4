#!/bin/sh
# Bootstrap a virtual environment in .venv with the pinned dependencies, then run a task:
#   ./run.sh demo       start the daemon on the bundled sample logs (Ctrl-C stops it)
#   ./run.sh test       run the whole test suite
#   ./run.sh irwatchd … run any irwatchd command inside the environment
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
python=${PYTHON:-python3}

if ! command -v "$python" >/dev/null 2>&1; then
    echo "run.sh: $python not found; install it with: apt-get install python3 python3-venv" >&2
    exit 69
fi
if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo "run.sh: the venv module is missing; install it with: apt-get install python3-venv" >&2
        exit 69
    fi
    "$python" -m venv "$venv"
fi
stamp="$venv/.installed"
# setup.py builds the optional C++ row builder of `detect` in place (see its docstring).
rebuild=0
for input in requirements.lock pyproject.toml setup.py irwatchd/detection/_rawrows.cpp; do
    if [ "$here/$input" -nt "$stamp" ]; then rebuild=1; fi
done
if [ ! -f "$stamp" ] || [ "$rebuild" = 1 ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.lock"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$here"
    touch "$stamp"
fi

task=${1:-help}
[ $# -gt 0 ] && shift
case "$task" in
    demo) exec "$venv/bin/python" "$here/samples/demo.py" "$@" ;;
    test) cd "$here" && exec "$venv/bin/python" -m pytest "$@" ;;
    irwatchd) exec "$venv/bin/irwatchd" "$@" ;;
    *)
        echo "usage: ./run.sh demo | test [PYTEST-ARGS] | irwatchd COMMAND [ARGS]" >&2
        exit 64
        ;;
esac
