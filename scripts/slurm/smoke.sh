#!/usr/bin/env bash
# Quick check (about 15 s) that the Slurm from up.sh behaves as tessera expects:
# a plain job completes, a failing array task shows FAILED with its exit code, the
# afterok dependent job is left PENDING with DependencyNeverSatisfied, a bad partition
# and an array index >= MaxArraySize are refused with sbatch's usual messages.
# Starts the cluster itself (up.sh) if needed; leaves it running. Needs root.
#
#   scripts/slurm/smoke.sh          # prints "smoke: N passed, 0 failed"
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# Not `eval "$(up.sh)"`: that would ignore up.sh failing.
slurm_env=$("$here/up.sh")
eval "$slurm_env"
work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-slurm-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
max_array=$(scontrol show config | sed -n 's/^MaxArraySize *= *//p')

pass=0
fail=0
check() { # check DESCRIPTION ACTUAL EXPECTED
    if [[ $2 == "$3" ]]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        printf 'smoke: FAIL %s\n  expected: %s\n  actual:   %s\n' "$1" "$3" "$2" >&2
    fi
}

# wait_done JOBID SECONDS: until no line of the job is PENDING/RUNNING/COMPLETING
wait_done() {
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if ! squeue -h -r -t all -j "$1" -o '%T' | grep -qE '^(PENDING|RUNNING|COMPLETING|CONFIGURING)$'; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

plain=$(sbatch --parsable -o "$work/plain-%j.out" --wrap 'echo hello')
wait_done "$plain" 30 || true
check "plain job state" "$(squeue -h -t all -j "$plain" -o '%T')" COMPLETED
check "plain job output" "$(cat "$work/plain-$plain.out")" hello

n=$((max_array < 4 ? max_array : 4))
# shellcheck disable=SC2016 # expanded by the job's shell, not here
arr=$(sbatch --parsable --array="0-$((n - 1))%2" -o "$work/arr-%A_%a.out" \
    --wrap '[ "$SLURM_ARRAY_TASK_ID" != 1 ] || exit 3')
dep=$(sbatch --parsable --dependency="afterok:$arr" -o /dev/null --wrap true)
wait_done "$arr" 60 || true
check "failed task" "$(squeue -h -r -t all -j "${arr}_1" -o '%i|%T|%r')" "${arr}_1|FAILED|NonZeroExitCode"
check "failed task exit code" \
    "$(scontrol show job -o "${arr}_1" | grep -o 'ExitCode=[0-9:]*' | head -n 1)" "ExitCode=3:0"
check "other tasks" "$(squeue -h -r -t all -j "$arr" -o '%T' | grep -c COMPLETED)" "$((n - 1))"
check "task log name" "$(test -f "$work/arr-${arr}_0.out" && echo present)" present
for _ in $(seq 50); do
    [[ $(squeue -h -j "$dep" -o '%r') == DependencyNeverSatisfied ]] && break
    sleep 0.2
done
check "dependent job" "$(squeue -h -j "$dep" -o '%T|%r')" "PENDING|DependencyNeverSatisfied"
scancel "$dep"

out=$(sbatch --parsable -p tessera-no-such-partition --wrap true 2>&1) && rc=0 || rc=$?
check "bad partition exit code" "$rc" 1
check "bad partition message" "$(tail -n 1 <<<"$out")" \
    "sbatch: error: Batch job submission failed: Invalid partition name specified"

out=$(sbatch --parsable --array="$max_array" --wrap true 2>&1) && rc=0 || rc=$?
check "array index >= MaxArraySize exit code" "$rc" 1
check "array index >= MaxArraySize message" "$out" \
    "sbatch: error: Batch job submission failed: Invalid job array specification"

echo "smoke: $pass passed, $fail failed"
((fail == 0))
