#!/usr/bin/env bash
# Set up oauth-traffic-analyzer in ./.venv, then run one job:
#   bash setup.sh demo   - analyze the bundled Exchange <-> Skype for Business capture
#   bash setup.sh test   - install the test tools (tshark, chromium) and run the whole test suite
#   bash setup.sh notebook - install JupyterLab into .venv and open notebooks/walkthrough.ipynb
#                          (extra arguments go to jupyter lab, e.g. --port 8890)
# Works on a fresh Debian 12 as root (or with sudo available), with Python >= 3.10.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-demo}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then apt_install python3 python3-venv; fi
if [ ! -x .venv/bin/python ]; then
  if ! "$python" -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    apt_install python3-venv
    "$python" -m venv .venv
  fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
# A C compiler and the Python headers build the native record walk (analyzer/sources/_walk.c);
# without them the package still installs and reads captures in pure Python, several times slower.
headers=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if ! command -v cc >/dev/null 2>&1 || [ ! -f "$headers/Python.h" ]; then
  apt_install gcc python3-dev || echo "warning: no C compiler or Python headers: pure-Python reader" >&2
fi
pip_install() {  # quiet unless it fails
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check "$@" >.venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    exit 1
  fi
}

case "$job" in
  demo)
    pip_install -e .
    .venv/bin/oauth-analyzer analyze captures/exchange-sfb.pcap
    ;;
  test)
    pip_install -e '.[test]'
    # The suite must exercise the native walk, not silently skip it.
    .venv/bin/python -c 'from analyzer.flows.tcp import GrantTable; assert GrantTable' \
      || { echo "error: the native record walk did not build (see .venv/pip.log)" >&2; exit 1; }
    if ! command -v tshark >/dev/null 2>&1; then apt_install tshark; fi
    if [ ! -x /usr/bin/chromium ]; then apt_install chromium; fi  # the HTML report's browser test
    .venv/bin/ruff check analyzer tests captures bench
    .venv/bin/ruff format --check analyzer tests captures bench
    .venv/bin/python -m pytest -q "${@:2}"
    ;;
  notebook)
    pip_install -e '.[notebook]'
    # As root JupyterLab refuses to start without --allow-root; a root shell is usually a server
    # without a browser, so it prints the URL to open instead.
    flags=()
    if [ "$(id -u)" -eq 0 ]; then flags=(--allow-root --no-browser); fi
    exec .venv/bin/jupyter lab "${flags[@]}" "${@:2}" notebooks/walkthrough.ipynb
    ;;
  *)
    echo "usage: bash setup.sh [demo|test|notebook]" >&2
    exit 2
    ;;
esac
