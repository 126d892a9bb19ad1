#!/usr/bin/env bash
# system-info: a short report on the host. Arguments (JSON) are accepted and ignored.
set -u

# Skills live inside the workspace, so the skill folder's filesystem is the workspace's.
export WS="${OPENPISTA_WORKSPACE:-${OPENPISTA_SKILL_DIR:-$PWD}}"

value() { # print the first non-empty output of the given commands, else "unknown"
    local out
    for cmd in "$@"; do
        out="$(eval "$cmd" 2>/dev/null | head -n 1)"
        if [ -n "$out" ]; then
            printf '%s' "$out"
            return
        fi
    done
    printf 'unknown'
}

os="$(value '. /etc/os-release && echo "$PRETTY_NAME"' \
            'sw_vers -productName && sw_vers -productVersion | paste -sd " " -' \
            'uname -s')"
kernel="$(value 'uname -sr')"
arch="$(value 'uname -m')"
host="$(value 'hostname' 'uname -n')"
cpus="$(value 'nproc' 'getconf _NPROCESSORS_ONLN' 'sysctl -n hw.ncpu')"
load="$(value "cut -d ' ' -f 1-3 /proc/loadavg" "sysctl -n vm.loadavg | tr -d '{}' | xargs")"
memory="$(value "free -h | awk '/^Mem:/ {print \$3 \" used of \" \$2}'")"
uptime_text="$(value 'uptime -p' \
    "awk '{d=int(\$1/86400); h=int(\$1%86400/3600); m=int(\$1%3600/60); printf \"up %d days, %d hours, %d minutes\", d, h, m}' /proc/uptime" \
    'uptime')"
disk="$(value "df -hP \"\$WS\" | awk 'NR==2 {print \$2 \" total, \" \$3 \" used, \" \$4 \" free (\" \$5 \" used) on \" \$6}'")"
size="unknown (OPENPISTA_WORKSPACE is not set)"
if [ -n "${OPENPISTA_WORKSPACE:-}" ]; then
    # du can take long on a huge tree: give it a few seconds at most.
    if command -v timeout >/dev/null 2>&1; then
        size="$(value 'timeout 5 du -sh "$WS" | cut -f 1')"
    else
        size="$(value 'du -sh "$WS" | cut -f 1')"
    fi
fi

cat <<REPORT
os: $os
kernel: $kernel
arch: $arch
hostname: $host
cpus: $cpus
load: $load
memory: $memory
uptime: $uptime_text
disk checked at: $WS
disk: $disk
workspace size: $size
REPORT
