#!/usr/bin/env bash
# Upscale inside a shell pipeline: video comes in on standard input and goes out on standard
# output, so adcvsr can sit between any producer and consumer (here: cat and a file).
#
#   examples/pipe.sh IN OUT [FORMAT]
#
# IN must be a streamable container (Matroska, MPEG-TS, NUT, y4m, fragmented MP4); an MP4
# with its index at the end cannot be read from a pipe (pass the path instead). FORMAT is the
# container written to the pipe: matroska (default), nut, mpegts or mp4 (fragmented).
# Environment: ADCVSR_WEIGHTS (default adcsr-x4), ADCVSR_DEVICE (default auto).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 IN OUT [matroska|nut|mpegts|mp4]" >&2
    exit 2
fi
in=$1
out=$2
format=${3:-matroska}

cat "$in" |
    adcvsr upscale - - --format "$format" --quiet \
        --weights "${ADCVSR_WEIGHTS:-adcsr-x4}" --device "${ADCVSR_DEVICE:-auto}" |
    cat > "$out"
# With pipefail the pipeline fails if adcvsr fails; PIPESTATUS has each command's own code.
echo "wrote $out" >&2
