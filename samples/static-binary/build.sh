#!/bin/sh
# Builds hello-server as a static binary (musl), reproducibly: no build paths or timestamps end up
# in it. The binary is an output, never committed.
set -eu
cd "$(dirname "$0")"
musl-gcc -static -Os -s -o hello-server hello.c -ffile-prefix-map="$PWD"=. -Wl,--build-id=none
