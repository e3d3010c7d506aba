#!/usr/bin/env bash
# Install the Debian packages the program needs, only those missing, only as root with apt.
# Without root or apt-get it lists what is missing and carries on (the Python install may
# still work on a machine that has them under other names).
set -euo pipefail
packages=(
  libusb-1.0-0          # import open3d
  xvfb xauth            # GUI tests and windows without a display
  libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxkbcommon-x11-0
  libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-randr0  # PyQt5 xcb platform
  libgl1 libegl1        # VTK rendering (Mesa)
  dicom3tools           # dciodvfy: validates exported DICOM-RT in tests
  poppler-utils         # pdftoppm/pdftotext: the tests render the treatment record PDF
)
python_bin="${1:-python3}"
if ! "$python_bin" -c "import ensurepip, venv" >/dev/null 2>&1; then
  packages+=(python3-venv)
fi
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "warning: missing Debian packages (install them as root): ${missing[*]}" >&2
fi
