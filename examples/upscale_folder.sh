#!/usr/bin/env bash
# Upscale every video and image under a folder into a mirrored tree, the way a nightly job
# would: reruns skip finished files, a broken file does not stop the rest, and the exit code
# tells a calling script what happened.
#
#   examples/upscale_folder.sh IN_DIR OUT_DIR [more adcvsr upscale options...]
#
# Environment: ADCVSR_WEIGHTS (default adcsr-x4: a registry name, a .safetensors path or
# hf://...), ADCVSR_DEVICE (default auto). A JSON log of the run is appended to
# OUT_DIR/adcvsr-log.jsonl (one event per line: run_start, model, start, progress,
# file_done, file_skipped, file_failed, summary).
set -uo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 IN_DIR OUT_DIR [adcvsr upscale options...]" >&2
    exit 2
fi
in_dir=$1
out_dir=$2
shift 2
mkdir -p "$out_dir"

adcvsr upscale "$in_dir" "$out_dir" \
    --recursive --suffix _x4 --ext mkv \
    --weights "${ADCVSR_WEIGHTS:-adcsr-x4}" --device "${ADCVSR_DEVICE:-auto}" \
    --json-file "$out_dir/adcvsr-log.jsonl" \
    "$@"
status=$?

case $status in
    0) echo "all done: $out_dir" >&2 ;;
    3) echo "some files failed (listed above and as file_failed in $out_dir/adcvsr-log.jsonl);" \
            "fix them and run again: finished files are skipped" >&2 ;;
    130 | 143) echo "interrupted: finished files are kept, run again to go on" >&2 ;;
    *) echo "adcvsr failed with exit code $status" >&2 ;;
esac
exit $status
