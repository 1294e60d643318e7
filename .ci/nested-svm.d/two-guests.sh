# shellcheck shell=bash
# Sourced by .ci/nested-svm and .ci/run: whether this machine can run the lane's two nested
# guests at once (NSVM_SECOND_GUEST's default). Each guest's two emulated CPUs need a host core
# while kvm-unit-tests' apic kernel keeps them busy (on 2 cores two guests stalled or crashed
# it in 2 of 2 runs, docs/nested-svm.md "Timing"), and each its -m.
# two_guests_fit MEM_MIB: 4 cores or more, and MemAvailable for two guests of MEM_MIB + 2 GiB.
two_guests_fit() {
    [ "$(nproc)" -ge 4 ] &&
        [ "$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)" -ge $((2 * $1 + 2048)) ]
}
