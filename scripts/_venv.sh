# Sourced by scripts/demo, scripts/test and .ci/run, from the repository's root (POSIX sh and bash).
#
# ensure_venv EXTRAS: makes .venv with ${PYTHON:-python3} (3.11 or newer) if it is missing, then installs this
# checkout into it, editable, with EXTRAS ("server", "all,test"), unless scripts/_installed.py finds everything
# installed already: then it is quick, and needs no network.

_venv_die() {
    echo "$0: $*" >&2
    exit 1
}

_venv_check_python() {  # PYTHON WHAT-TO-DO
    if ! "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        _venv_version=$("$1" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo unknown)
        _venv_die "$1 is Python $_venv_version, and modelway needs Python 3.11 or newer: $2"
    fi
}

ensure_venv() {  # EXTRAS
    if [ ! -x .venv/bin/python ]; then
        _venv_py=${PYTHON:-python3}
        command -v "$_venv_py" >/dev/null 2>&1 ||
            _venv_die "$_venv_py not found; modelway needs Python 3.11 or newer: run PYTHON=/path/to/python3.11 $0"
        _venv_check_python "$_venv_py" "run PYTHON=/path/to/python3.11 $0"
        echo "$0: creating .venv with $(command -v "$_venv_py")" >&2
        "$_venv_py" -m venv .venv
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    fi
    _venv_check_python .venv/bin/python "remove .venv, then run PYTHON=/path/to/python3.11 $0"
    if _venv_why=$(.venv/bin/python scripts/_installed.py "$1" 2>&1); then
        return 0
    fi
    echo "$0: installing modelway[$1] into .venv ($_venv_why)" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$1]"
}
