#!/usr/bin/env bash
# install_if_absent.sh DIR FILE... - meson's install script for the example
# configurations: copies each FILE into DIR (under $DESTDIR), mode 0644, unless
# a file of that name is already there (an operator's edited policy survives
# a reinstall; the shipped one is left next to it as NAME.dist).
set -euo pipefail
dir="${DESTDIR:-}$1"
shift
install -d -m 0755 "$dir"
for f in "$@"; do
  name="$(basename "$f")"
  if [ -e "$dir/$name" ]; then
    install -m 0644 "$f" "$dir/$name.dist"
    echo "install_if_absent: kept $dir/$name (the shipped one is $name.dist)"
  else
    install -m 0644 "$f" "$dir/$name"
  fi
done
