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
# setup.py builds the optional C++ row builder of `detect` in place (see its docstring),
# when the Hyperscan and RE2 headers are installed.
source="$here/irwatchd/detection/_rawrows.cpp"
native_headers=0
if [ -f /usr/include/hs/hs.h ] && [ -f /usr/include/re2/re2.h ]; then native_headers=1; fi
native_built() {
    for built in "$here"/irwatchd/detection/_rawrows*.so; do
        if [ -f "$built" ] && [ "$built" -nt "$source" ]; then return 0; fi
    done
    return 1
}
rebuild=0
for input in requirements.lock pyproject.toml setup.py irwatchd/detection/_rawrows.cpp; do
    if [ "$here/$input" -nt "$stamp" ]; then rebuild=1; fi
done
if [ "$native_headers" = 1 ] && ! native_built; then rebuild=1; fi
if [ ! -f "$stamp" ] || [ "$rebuild" = 1 ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.lock"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$here"
    # An editable install leaves bytecode to the first import, which PYTHONDONTWRITEBYTECODE
    # skips; without it each command compiles every module again.
    "$venv/bin/python" -m compileall -q "$here/irwatchd" >/dev/null
    touch "$stamp"
    if [ "$native_headers" = 1 ] && ! native_built; then
        echo "run.sh: the C++ row builder did not build from the current source, so detect uses" \
            "an older build or Python (irwatchd check says which); see the compiler output of:" \
            "$venv/bin/pip install --no-deps -e $here" >&2
    fi
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
