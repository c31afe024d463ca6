#!/usr/bin/env sh
# Makes sure the system programs the course needs are present: python3 with venv,
# and ffmpeg/ffprobe (musdb reads audio through stempeg, which calls them).
# Installs what is missing with apt-get when it can (root on Debian/Ubuntu);
# otherwise stops with one line saying how to install it.
set -eu

missing=""
python3 -c "import venv, ensurepip" 2>/dev/null || missing="$missing python3-venv"
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing="$missing ffmpeg"
[ -z "$missing" ] && exit 0

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Installing system packages:$missing (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  exit 0
fi
echo "Missing system packages:$missing. Install them (Debian/Ubuntu: sudo apt-get install$missing; macOS: brew install ffmpeg; conda: conda env create -f environment.yml) and run make again." >&2
exit 1
