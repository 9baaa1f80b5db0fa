#!/bin/sh
# BROWSER for command-line clients: hands the URL to fake_browser.mjs in the background (a real
# browser returns at once too) and logs to $E2E_LOG_DIR/fake-browser.log.
dir=$(dirname "$0")
node "$dir/fake_browser.mjs" "$1" >>"${E2E_LOG_DIR:-.}/fake-browser.log" 2>&1 &
exit 0
