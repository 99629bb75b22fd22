#!/usr/bin/env bash
echo "=== bash-script app ==="
ls -alHR
