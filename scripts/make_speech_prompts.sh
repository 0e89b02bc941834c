#!/usr/bin/env bash
# Make the spoken prompts queues announce with: position ("You are number" + digits) and
# estimated wait ("Your expected wait is about" + digits + "minutes"). Spoken by espeak-ng
# (Debian package espeak-ng), US English, 150 words a minute, written as espeak-ng's 22.05 kHz
# mono WAV; the prompt library resamples to 8 kHz when it loads them.
#
# Replace any of them with a recording of your own under the same name (see prompts/README.md).
set -euo pipefail
cd "$(dirname "$0")/../prompts"
command -v espeak-ng >/dev/null || { echo "espeak-ng is needed: apt-get install espeak-ng" >&2; exit 1; }
say() { espeak-ng -v en-us -s 150 -a 120 -w "$1.wav" "$2"; }
say queue-position "You are number"
say queue-wait "Your expected wait is about"
say minutes "minutes"
words=(zero one two three four five six seven eight nine)
for d in 0 1 2 3 4 5 6 7 8 9; do
    say "digit-$d" "${words[$d]}"
done
echo "spoken prompts written to $(pwd)"
