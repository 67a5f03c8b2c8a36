#!/usr/bin/env bash
# FlashAttention-4 (flash_attn.cute) onto a GPU machine that has no network, for the
# attention suite's FA4 column. The wheels (../shared/wheels/fa4/, its README says what
# they are) are 68 MiB, and one device call carries at most 64 MiB, so they go in two calls:
# the first leaves part0 of the CUDA 13 libraries in /tmp, the second carries the rest and
# installs. The second must reach the same warm machine (a machine left idle goes back,
# and /tmp with it).
#
#   here, once:    benchmarks/fa4_install.sh stage
#                  -> .fa4a/ (part0, 29 MiB) and .fa4b/ (the rest, 40 MiB), git-ignored
#   device call 1 (carry [".fa4a"]):
#                  bash benchmarks/fa4_install.sh part0
#   device call 2 (carry [".fa4b"]):
#                  env=$(bash benchmarks/fa4_install.sh install /tmp/fa4) && eval "$env" &&
#                  PYTHONPATH=.:$PYTHONPATH python3 benchmarks/attention_suite.py \
#                      --out "$OUT/attention-h200.json" ...
#
# `install` prints one line, the `export PYTHONPATH=...` that .fa4b/install.sh prints: the
# suite's prefix keeps it (a plain PYTHONPATH=. would drop FA4's path).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
part0_dir=/tmp/part0

case "${1:-}" in
stage)
    wheels=${FA4_WHEELS:-$root/../shared/wheels/fa4}
    rm -rf "$root/.fa4a" "$root/.fa4b"
    mkdir -p "$root/.fa4a" "$root/.fa4b"
    cp "$wheels/libs_cu13.tar.xz.part0" "$root/.fa4a/"
    find "$wheels" -maxdepth 1 -type f ! -name libs_cu13.tar.xz.part0 -exec cp {} "$root/.fa4b/" \;
    exclude=$(git -C "$root" rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")"
    for folder in /.fa4a/ /.fa4b/; do
        grep -qxF "$folder" "$exclude" 2>/dev/null || echo "$folder" >> "$exclude"
    done
    du -sh "$root/.fa4a" "$root/.fa4b" >&2
    ;;
part0)
    mkdir -p "$part0_dir"
    cp "$root"/.fa4a/* "$part0_dir/"
    ls -l "$part0_dir" >&2
    ;;
install)
    target=${2:?usage: fa4_install.sh install TARGET_DIR}
    if [[ ! -f $part0_dir/libs_cu13.tar.xz.part0 ]]; then
        echo "fa4_install: no $part0_dir/libs_cu13.tar.xz.part0: call 1 ran on another" \
             "machine (the warm one went back); run call 1 again" >&2
        exit 1
    fi
    # install.sh's pip and tar say nothing on success; its last line is the export.
    PART0_DIR=$part0_dir bash "$root/.fa4b/install.sh" "$target" | tail -1
    ;;
*)
    echo "usage: fa4_install.sh stage | part0 | install TARGET_DIR" >&2
    exit 2
    ;;
esac
