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
# major as rustc come from Debian (llvm-N).
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
llvm_major="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
# llvm-profdata and llvm-cov of rustc's LLVM major, from Debian's llvm-N
# package (the PyPI wheels of these tools are built without zlib, and rustc
# compresses the profile names and coverage maps with it).
tools="/usr/lib/llvm-$llvm_major"
if [[ ! -x "$tools/bin/llvm-cov" || ! -x "$tools/bin/llvm-profdata" ]]; then
    echo "installing Debian's llvm-$llvm_major for llvm-cov and llvm-profdata"
    sudo_cmd=()
    [[ "$(id -u)" == 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "llvm-$llvm_major" >/dev/null
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

"$tools/bin/llvm-profdata" merge -sparse "$out"/profraw/*.profraw -o "$out/merged.profdata"
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
# Test code is not what is measured: the test trees and src/**/tests.rs
# (inline `mod tests` blocks in a module's own file still count).
ignore='(\.cargo/registry|/rustc/|/tests/|/benches/|/tests\.rs$)'
"$tools/bin/llvm-cov" export -format=lcov -instr-profile="$out/merged.profdata" \
    -ignore-filename-regex="$ignore" "${objects[@]:1}" > "$out/lcov.info"
"$tools/bin/llvm-cov" export -summary-only -instr-profile="$out/merged.profdata" \
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
print("module".ljust(12) + "lines".rjust(8) + "covered".rjust(9) + "%".rjust(8))
tc = tn = 0
for mod, (c, n) in sorted(mods.items()):
    tc += c; tn += n
    print(f"{mod:<12}{n:>8}{c:>9}{100 * c / max(n, 1):>7.1f}%")
print("total".ljust(12) + f"{tn:>8}{tc:>9}{100 * tc / max(tn, 1):>7.1f}%")' "$root" | tee "$out/summary.txt"
exit "$rc"
