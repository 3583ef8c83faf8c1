#!/usr/bin/env bash
# Runs every `go test -fuzz` target of the module for a short while each
# (FUZZTIME, default 20000 inputs): the payload decoders of the gateway and
# the agent, the GPU probe's reply (internal/gpuprobe), the config parser and
# the name rules. `go test ./...` already
# runs each target's seed corpus (f.Add and testdata/fuzz/); this explores
# beyond it. A fuzzing run takes one target, so each package's instrumented
# test binary is built once and run once per target.
# A failure stops the run; the input that failed is written to the
# package's testdata/fuzz/<target>/ (commit it with the fix).
set -euo pipefail

GO=${GO:-go}
# A count, not a duration: with a duration, go1.26's fuzz coordinator can
# fail a healthy target with "context deadline exceeded" as time runs out on
# a loaded machine (go.dev/issue/75804, fixed in go1.27). 20000 inputs take
# one to six seconds a target on a busy 2-core machine.
FUZZTIME=${FUZZTIME:-20000x}
cd "$(dirname "$0")/.."
root=$PWD
cache=$($GO env GOCACHE)/fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Packages with fuzz targets: directories of test files declaring one.
mapfile -t dirs < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u)
if [ ${#dirs[@]} -eq 0 ]; then
	echo "fuzz-short: no fuzz targets found" >&2
	exit 1
fi

start=$SECONDS
n=0
for d in "${dirs[@]}"; do
	pkg="./${d#./}"
	importpath=$($GO list "$pkg")
	bin="$work/$(basename "$d").test"
	# -fuzz at build time is what instruments the binary for coverage.
	$GO test -c -fuzz '^Fuzz' -o "$bin" "$pkg"
	mapfile -t targets < <(cd "$d" && "$bin" -test.list '^Fuzz' | grep '^Fuzz')
	for t in "${targets[@]}"; do
		echo "fuzz-short: $pkg $t ($FUZZTIME)"
		if ! (cd "$d" && "$bin" -test.run '^$' -test.fuzz "^${t}\$" -test.fuzztime "$FUZZTIME" \
			-test.timeout 5m -test.fuzzcachedir "$cache/$importpath"); then
			echo "fuzz-short: $pkg $t FAILED (a new failing input is written under $root/${d#./}/testdata/fuzz/$t/)" >&2
			exit 1
		fi
		n=$((n + 1))
	done
done
echo "fuzz-short: $n targets passed in $((SECONDS - start))s"
