#!/bin/sh
# Install fetchd from this folder into .venv (a virtual environment of its own).
# Debian's and Ubuntu's python3 refuse a bare "pip install" (PEP 668) and ship
# venv's pip bootstrap as the package python3-venv: that is installed first when
# missing, with sudo unless run as root. Any other Python 3.11+ just works.
set -eu
cd "$(dirname "$0")"

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    as_root=""
    [ "$(id -u)" = 0 ] || as_root=sudo
    $as_root apt-get install -y python3-venv
fi
python3 -m venv .venv
.venv/bin/python -m pip install --disable-pip-version-check -q .
echo "fetchd installed: $(pwd)/.venv/bin/fetchd"
