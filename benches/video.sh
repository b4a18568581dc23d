#!/usr/bin/env bash
# `anycore video --filter blur:sigma=2` against `ffmpeg -vf gblur=sigma=2`
# on the same 1080p 4:2:0 y4m file, with the same number of threads, in one
# run: frames a second of each, their ratio, and each one's peak RSS.
#
#   benches/video.sh [FRAMES] [THREADS]     (default 300 frames, every core)
#
# The input is written once to $TMPDIR (1080p 4:2:0 is 3.1 MB a frame) and
# read from the page cache by both, each run twice, alternating; outputs go
# to /dev/null. Needs ffmpeg (scripts/install-deps.sh --video), GNU time
# and a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."

frames=${1:-300}
threads=${2:-$(nproc)}
bin=target/release/anycore
input=${TMPDIR:-/tmp}/anycore-video-bench-${frames}.y4m

if [ ! -s "$input" ]; then
    ffmpeg -hide_banner -loglevel error -f lavfi \
        -i "testsrc2=size=1920x1080:rate=25" -frames:v "$frames" \
        -pix_fmt yuv420p -f yuv4mpegpipe -y "$input"
fi
bytes=$(stat -c %s "$input")
cat "$input" > /dev/null # into the page cache

# Runs "$@", prints "seconds peak_rss_kib".
timed() {
    /usr/bin/time -f "%e %M" -o /tmp/anycore-video-bench.time "$@" > /dev/null 2>&1
    cat /tmp/anycore-video-bench.time
}

echo "input: $frames frames of 1920x1080 4:2:0, $((bytes >> 20)) MiB; $threads threads"
for round in 1 2; do
    read -r a_s a_rss < <(RAYON_NUM_THREADS=$threads timed "$bin" video \
        --backend cpu --filter blur:sigma=2 -i "$input" -o /dev/null)
    read -r f_s f_rss < <(timed ffmpeg -hide_banner -loglevel error \
        -threads "$threads" -filter_threads "$threads" -i "$input" \
        -vf gblur=sigma=2 -f yuv4mpegpipe -y /dev/null)
    awk -v n="$frames" -v a="$a_s" -v f="$f_s" -v ar="$a_rss" -v fr="$f_rss" -v r="$round" 'BEGIN {
        printf "round %d: anycore %.1f fps (%.2f s, peak RSS %d MiB); ffmpeg gblur %.1f fps (%.2f s, peak RSS %d MiB); anycore/ffmpeg %.2fx\n",
            r, n / a, a, ar / 1024, n / f, f, fr / 1024, f / a }'
done
