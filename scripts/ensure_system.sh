#!/usr/bin/env sh
# Makes sure the system programs the course needs are present: python3 with venv,
# ffmpeg/ffprobe (musdb reads audio through stempeg, which calls them) and, on Debian
# or Ubuntu as root, the distribution's chromium for the browser tests (Playwright
# drives it; the course never downloads a browser of its own).
# Installs what is missing with apt-get when it can (root on Debian/Ubuntu);
# otherwise stops with one line saying how to install the required programs. Chromium
# is optional elsewhere: without it the browser tests are skipped and say why.
set -eu

missing=""
python3 -c "import venv, ensurepip" 2>/dev/null || missing="$missing python3-venv"
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing="$missing ffmpeg"
can_apt=""
command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && can_apt=yes
browser=""
[ -n "$can_apt" ] && ! command -v chromium >/dev/null 2>&1 && browser="chromium fonts-liberation"
[ -z "$missing$browser" ] && exit 0

if [ -n "$can_apt" ]; then
  echo "Installing system packages:$missing $browser (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing $browser >/dev/null
  exit 0
fi
echo "Missing system packages:$missing. Install them (Debian/Ubuntu: sudo apt-get install$missing; macOS: brew install ffmpeg; conda: conda env create -f environment.yml) and run make again." >&2
exit 1
