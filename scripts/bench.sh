#!/usr/bin/env bash
# Compares the gateway with OpenSSH's sshd on loopback, in one run so the
# ratios are fair on a shared machine: same client, same cipher, same host key
# type; each figure is the median of BENCH_RUNS runs, sshd and gateway taking
# turns. sshd runs commands on the host; the gateway runs them in a container,
# through the agent. Prints one table and appends it, with the date, machine
# and commit, to bench/RESULTS.md.
#
#   warm login         wall time of `ssh host true` (container running)
#   cold login         `docker run --rm IMAGE true` vs the gateway's first
#                      login after the bench container was removed
#   sftp, scp, rsync   download and upload of a BENCH_SIZE_MB file of random
#                      data, all files on tmpfs (/dev/shm on the host and in
#                      the container); scp is the classic protocol (-O), as
#                      the sftp row already measures the SFTP protocol
#   ssh cat            head -c N /dev/zero | ssh host 'cat >/dev/null', and
#                      ssh host 'head -c N /dev/zero' >/dev/null
#   -L                 a TCP source/sink (python3) on 127.0.0.1 of the host /
#                      the container, through one `ssh -L`, a connection a run
#   idle RSS           BENCH_IDLE authenticated connections, each with a
#                      session running `cat`: the gateway's VmRSS against the
#                      sum of the RSS of sshd's per-connection processes (and
#                      the same in PSS, which counts shared pages once; the
#                      agent's RSS for information); BENCH_RUNS samples, 1 s
#                      apart, of one set of connections
#   logins/s           BENCH_LOGINS `ssh host true`, 10 and 50 at a time
#
# sshd's commands run under bash without ~/.bashrc (SetEnv SHLVL=1): a host
# root's shell setup is not what is compared. The gateway's config has no
# GPUs and no CPU, memory or pids limits, and its handshake limits are above
# the bursts here; both servers take 200 handshakes at once.
#
# Throughput is the bytes over the wall time of the whole command, login
# included, as a user sees it (at small sizes the login dominates); -L runs
# over one forward already set up.
#
# Every transfer is checked: exit status and size each run, sha256 once per
# kind and server (ssh cat: the byte count, once each way; -L: the byte count,
# every run). A failed or short transfer stops the bench with a message and a
# non-zero status. Every background ssh is killed by pid on exit, and the
# bench container and its network are removed.
#
# usage: scripts/bench.sh   (root; after `make build`; `make bench` runs it)
# At the defaults it takes about half an hour on 2 busy cores, most of it in
# sshd's logins (logins/s, idle connections) and the 1 GiB transfers.
# environment (defaults):
#   BENCH_SIZE_MB=1024 BENCH_RUNS=5 BENCH_IDLE=1000 BENCH_LOGINS=200
#   BENCH_CIPHER=aes128-gcm@openssh.com DEV_IMAGE=sygaldry/zephyr:dev
#   BENCH_PORT_BASE=22020 (uses BASE+2, +3, +10, +11, +12 on 127.0.0.1)
#   BENCH_RESULTS=bench/RESULTS.md (empty: print only)
#   BENCH_IDLE_TIMEOUT=600 (seconds to open the idle connections)
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
root=$PWD

size_mb=${BENCH_SIZE_MB:-1024}
runs=${BENCH_RUNS:-5}
idle_n=${BENCH_IDLE:-1000}
logins=${BENCH_LOGINS:-200}
cipher=${BENCH_CIPHER:-aes128-gcm@openssh.com}
image=${DEV_IMAGE:-sygaldry/zephyr:dev}
port_base=${BENCH_PORT_BASE:-22020}
results=${BENCH_RESULTS-bench/RESULTS.md}
idle_timeout=${BENCH_IDLE_TIMEOUT:-600}

work=""
die() { # also from $(...): the message goes to a file that cleanup prints again, last
	echo "bench: $*" >&2
	[ -z "$work" ] || echo "bench: $*" >>"$work/failure"
	exit 1
}
for v in size_mb runs idle_n logins port_base idle_timeout; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
[ "$(id -u)" = 0 ] || die "run as root (sshd, docker, /proc of the gateway)"
for b in sygaldry-gateway sygaldry-agent; do
	[ -x "bin/$b" ] || die "bin/$b is missing: run make build first"
done
[ -x /usr/sbin/sshd ] || die "openssh-server is not installed (/usr/sbin/sshd)"
for c in docker ssh scp sftp rsync python3 ss sha256sum xargs; do
	command -v "$c" >/dev/null || die "$c is not installed"
done
bash test/image/build.sh "$image" >/dev/null

bytes=$((size_mb * 1024 * 1024))
sshd_port=$((port_base + 2))
gw_port=$((port_base + 3))
tcp_port=$((port_base + 10)) # the -L source/sink, on the host and in the container
project=bench
ctr=sygaldry-$project-$project # the gateway's name for the container (and its network)
# Many idle connections: each costs the gateway a few descriptors.
ulimit -n "$(ulimit -Hn)"

# Everything lives on tmpfs, so the disk is never what is measured.
work=$(mktemp -d /dev/shm/sygbench.XXXXXX)
rdir_gw=/dev/shm/sygbench # in the container
declare -A port=([sshd]=$sshd_port [gw]=$gw_port)
declare -A login=([sshd]=root [gw]=$project)
declare -A rdir=([sshd]=$work/remote [gw]=$rdir_gw)
declare -A lport=([sshd]=$((port_base + 11)) [gw]=$((port_base + 12)))
declare -A name=([sshd]=sshd [gw]=gateway)
pids=()      # sshd, gateway, the -L sessions
idle_pids=() # the idle connections
sshd_pid="" gw_pid=""

cleanup() {
	local rc=$?
	set +e
	if [ "$rc" != 0 ]; then
		echo "--- gateway log, last warnings and errors:" >&2
		grep -E 'level=(WARN|ERROR)' "$work/gateway.log" 2>/dev/null | tail -n 10 >&2
		echo "--- sshd log, last lines (logins and logouts left out):" >&2
		grep -Ev '^(Accepted|Received disconnect|Disconnected) ' "$work/sshd.log" 2>/dev/null | tail -n 10 >&2
		[ ! -s "$work/failure" ] || cat "$work/failure" >&2
	fi
	[ ${#idle_pids[@]} -gt 0 ] && kill "${idle_pids[@]}" 2>/dev/null
	[ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
	for p in "${idle_pids[@]}" "${pids[@]}"; do wait "$p" 2>/dev/null; done
	exec 8>&- 2>/dev/null
	docker rm -f "$ctr" >/dev/null 2>&1
	docker network rm "$ctr" >/dev/null 2>&1
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# stdin for sessions that must stay open (cat, the -L sessions): a FIFO that
# this shell holds open for writing and never writes to.
mkfifo "$work/hold"
exec 8<>"$work/hold"

ssh-keygen -q -t ed25519 -N "" -f "$work/key"
ssh-keygen -q -t ed25519 -N "" -f "$work/hostkey"
cp "$work/key.pub" "$work/authorized_keys"
mkdir -p /run/sshd "$work/remote"
cat >"$work/sshd_config" <<CFG
ListenAddress 127.0.0.1:$sshd_port
HostKey $work/hostkey
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The key files live under /dev/shm (sticky, world-writable): fine for a bench.
StrictModes no
PidFile $work/sshd.pid
Subsystem sftp internal-sftp
# The concurrent logins and the idle connections arrive in bursts.
MaxStartups 200
# bash skips ~/.bashrc for a command from sshd only from shell level 2 on:
# the host's root ~/.bashrc (pyenv init, ...) would otherwise be measured in
# every sshd figure, at seconds a login; the container user's home is new.
SetEnv SHLVL=1
CFG
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
sshd_pid=$!
pids+=("$sshd_pid")

# The gateway: no GPUs, no CPU/memory/pids limits and no handshake queueing
# in the way; the container's own network as in production (made on the
# first login, then reused, like docker run's default bridge).
mkdir -p "$work/state" "$work/storage"
cat >"$work/gateway.toml" <<CFG
[server]
listen = "127.0.0.1:$gw_port"
state_dir = "$work/state"
admin_socket = "$work/admin.sock"
agent_path = "$root/bin/sygaldry-agent"
idle_stop = "0"
log_commands = false
max_startups = 200
max_startups_queue = 4096
per_source_max_startups = 200
[docker]
storage_root = "$work/storage"
[defaults]
image = "$image"
gpus = "none"
shm_size = "$((2 * size_mb + 256))m"
cpus = "unlimited"
memory = "unlimited"
pids_limit = "unlimited"
[projects.$project]
members = ["$project"]
[users.$project]
keys = ["$(cat "$work/key.pub")"]
CFG
docker rm -f "$ctr" >/dev/null 2>&1 || true
bin/sygaldry-gateway --config "$work/gateway.toml" 2>"$work/gateway.log" &
gw_pid=$!
pids+=("$gw_pid")

opts=(-F /dev/null -i "$work/key" -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes
	-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
	-o HostKeyAlgorithms=ssh-ed25519 -o Ciphers="$cipher" -o Compression=no
	-o ControlMaster=no -o ControlPath=none -o ConnectTimeout=30)
[[ $work != *[[:space:]]* ]] || die "work directory $work has a space" # rsync -e takes one string
to() { # to SIDE: sets cmd to the ssh command line for sshd (root on the host) or the gateway (the container)
	cmd=(ssh "${opts[@]}" -p "${port[$1]}" "${login[$1]}@127.0.0.1")
}
sshx() { # sshx SIDE ARGS...: ssh to that side, in the foreground
	local cmd
	to "$1"
	shift
	"${cmd[@]}" "$@"
}
us_now() { local t=$EPOCHREALTIME; echo "${t/./}"; } # microseconds
declare -A samples=() # key: "figure side" -> space-separated values
add() { samples["$1 $2"]+="$3 "; }
median() { # median of the samples of figure $1, side $2
	local v
	read -r -a v <<<"${samples["$1 $2"]:-}"
	[ ${#v[@]} -gt 0 ] || die "no samples for $1 $2"
	printf '%s\n' "${v[@]}" | sort -g | awk '{ a[NR] = $1 } END {
		m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.1f\n", m }'
}
mbps() { awk -v b="$1" -v us="$2" 'BEGIN { printf "%.1f", b / us }'; } # bytes per µs = MB/s
ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }

# Both servers answer before anything is measured.
for _ in $(seq 100); do
	sshx sshd true 2>/dev/null && break
	kill -0 "$sshd_pid" 2>/dev/null || die "sshd exited at start"
	sleep 0.1
done
sshx sshd true || die "sshd does not answer on 127.0.0.1:$sshd_port (see above)"
for _ in $(seq 100); do
	[ -S "$work/admin.sock" ] && break
	kill -0 "$gw_pid" 2>/dev/null || die "the gateway exited at start"
	sleep 0.1
done
sshx gw true >/dev/null 2>"$work/first.err" || die "first login through the gateway failed: $(cat "$work/first.err")"
docker run --rm "$image" true || die "docker run --rm $image true failed"

echo "bench: $size_mb MiB transfers, $runs runs, $idle_n idle connections, $logins logins; cipher $cipher; $(nproc) cores" >&2

# --- cold login: the bench container removed first, each run ---------------
for r in $(seq "$runs"); do
	t0=$(us_now)
	docker run --rm "$image" true || die "docker run --rm $image true failed"
	add cold sshd $(($(us_now) - t0))
	docker rm -f "$ctr" >/dev/null || die "cannot remove $ctr"
	t0=$(us_now)
	sshx gw true 2>"$work/cold.err" || die "cold login $r through the gateway failed: $(cat "$work/cold.err")"
	add cold gw $(($(us_now) - t0))
done
echo "bench: cold login done" >&2

# --- warm login -------------------------------------------------------------
for _ in $(seq "$runs"); do
	for side in sshd gw; do
		t0=$(us_now)
		sshx "$side" true || die "ssh ${name[$side]} true failed"
		add warm "$side" $(($(us_now) - t0))
	done
done
echo "bench: warm login done" >&2

# --- files: random data made once, copied to both servers' tmpfs ------------
head -c "$bytes" /dev/urandom >"$work/src.bin"
sum=$(sha256sum "$work/src.bin" | cut -d' ' -f1)
remote_sum() { sshx "$1" "sha256sum $2" | cut -d' ' -f1; }
remote_size() { sshx "$1" "stat -c %s $2"; }
for side in sshd gw; do
	sshx "$side" "mkdir -p ${rdir[$side]} && cat >${rdir[$side]}/src.bin" <"$work/src.bin" ||
		die "copying the source file to ${name[$side]} failed"
	[ "$(remote_sum "$side" "${rdir[$side]}/src.bin")" = "$sum" ] || die "the source file on ${name[$side]} has the wrong sha256"
done

# One transfer: tool, direction, side, run. The destination is removed
# before (not timed); the size is checked after each run, sha256 after the
# first.
transfer() {
	local tool=$1 dir=$2 side=$3 r=$4 t0 t1 rsh
	local dst="${login[$side]}@127.0.0.1" rsrc=${rdir[$side]}/src.bin rup=${rdir[$side]}/up.bin
	local what="$tool $dir via ${name[$side]} (run $r)"
	rm -f "$work/down.bin"
	sshx "$side" "rm -f $rup" || die "$what: cannot remove $rup"
	rsh="ssh ${opts[*]} -p ${port[$side]}"
	t0=$(us_now)
	case $tool-$dir in
	sftp-down) sftp -q "${opts[@]}" -P "${port[$side]}" -b - "$dst" <<<"get $rsrc $work/down.bin" >/dev/null ;;
	sftp-up) sftp -q "${opts[@]}" -P "${port[$side]}" -b - "$dst" <<<"put $work/src.bin $rup" >/dev/null ;;
	scp-down) scp -O -q "${opts[@]}" -P "${port[$side]}" "$dst:$rsrc" "$work/down.bin" ;;
	scp-up) scp -O -q "${opts[@]}" -P "${port[$side]}" "$work/src.bin" "$dst:$rup" ;;
	rsync-down) rsync -e "$rsh" "$dst:$rsrc" "$work/down.bin" ;;
	rsync-up) rsync -e "$rsh" "$work/src.bin" "$dst:$rup" ;;
	esac 2>"$work/transfer.err" || die "$what failed: $(cat "$work/transfer.err")"
	t1=$(us_now)
	if [ "$dir" = down ]; then
		[ "$(stat -c %s "$work/down.bin" 2>/dev/null)" = "$bytes" ] || die "$what: the file arrived with the wrong size"
		[ "$r" != 1 ] || [ "$(sha256sum "$work/down.bin" | cut -d' ' -f1)" = "$sum" ] || die "$what: sha256 differs"
	else
		[ "$(remote_size "$side" "$rup")" = "$bytes" ] || die "$what: the file arrived with the wrong size"
		[ "$r" != 1 ] || [ "$(remote_sum "$side" "$rup")" = "$sum" ] || die "$what: sha256 differs"
	fi
	add "$tool-$dir" "$side" "$(mbps "$bytes" $((t1 - t0)))"
}
for tool in sftp scp rsync; do
	for dir in down up; do
		for r in $(seq "$runs"); do
			for side in sshd gw; do transfer "$tool" "$dir" "$side" "$r"; done
		done
		echo "bench: $tool $dir done" >&2
	done
done
rm -f "$work/down.bin"
for side in sshd gw; do sshx "$side" "rm -f ${rdir[$side]}/up.bin ${rdir[$side]}/src.bin"; done

# --- ssh host cat, both ways ------------------------------------------------
for side in sshd gw; do # the byte counts, once (not timed)
	n=$(sshx "$side" "head -c $bytes /dev/zero" | wc -c) || die "ssh ${name[$side]} head failed"
	[ "$n" = "$bytes" ] || die "ssh ${name[$side]} 'head -c $bytes /dev/zero' gave $n bytes"
	n=$(head -c "$bytes" /dev/zero | sshx "$side" 'wc -c') || die "ssh ${name[$side]} wc failed"
	[ "$n" = "$bytes" ] || die "head -c $bytes /dev/zero | ssh ${name[$side]} 'wc -c' counted $n bytes"
done
for _ in $(seq "$runs"); do
	for side in sshd gw; do
		t0=$(us_now)
		sshx "$side" "head -c $bytes /dev/zero" >/dev/null || die "ssh ${name[$side]} 'head -c $bytes /dev/zero' failed"
		add cat-down "$side" "$(mbps "$bytes" $(($(us_now) - t0)))"
		t0=$(us_now)
		head -c "$bytes" /dev/zero | sshx "$side" 'cat >/dev/null' || die "ssh ${name[$side]} 'cat >/dev/null' failed"
		add cat-up "$side" "$(mbps "$bytes" $(($(us_now) - t0)))"
	done
done
echo "bench: ssh cat done" >&2

# --- -L: a TCP source/sink on the server side, one connection a run ---------
# "serve HOST PORT": answers "down N\n" with N zero bytes, and "up N\n" by
# reading to EOF and replying with the count; it exits when its stdin closes
# (the session that runs it ended). "get PORT down|up N": one run, prints µs.
cat >"$work/tcpbench.py" <<'PY'
import os, socket, sys, threading, time

def serve(host, port):
    ls = socket.create_server((host, port))
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()
    print("ready", flush=True)
    zeros, buf = memoryview(bytes(1 << 20)), bytearray(1 << 20)
    while True:
        c, _ = ls.accept()
        try:
            head = b""
            while b"\n" not in head and len(head) < 64:
                d = c.recv(64)
                if not d:
                    break
                head += d
            line, _, rest = head.partition(b"\n")
            parts = line.split()
            if len(parts) != 2:
                continue
            n = int(parts[1])
            if parts[0] == b"down":
                while n > 0:
                    k = min(n, len(zeros))
                    c.sendall(zeros[:k])
                    n -= k
            elif parts[0] == b"up":
                got = len(rest)
                while True:
                    k = c.recv_into(buf)
                    if k == 0:
                        break
                    got += k
                c.sendall(b"%d\n" % got)
        except (OSError, ValueError):
            pass
        finally:
            c.close()

def get(port, mode, n):
    t0 = time.monotonic()
    c = socket.create_connection(("127.0.0.1", port), timeout=600)
    c.sendall(b"%s %d\n" % (mode.encode(), n))
    if mode == "down":
        buf, got = bytearray(1 << 20), 0
        while True:
            k = c.recv_into(buf)
            if k == 0:
                break
            got += k
    else:
        zeros, left = memoryview(bytes(1 << 20)), n
        while left > 0:
            k = min(left, len(zeros))
            c.sendall(zeros[:k])
            left -= k
        c.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            d = c.recv(64)
            if not d:
                break
            reply += d
        got = int(reply or b"-1")
    t1 = time.monotonic()
    if got != n:
        sys.exit("%s through the forward: %d bytes of %d" % (mode, got, n))
    print(int((t1 - t0) * 1e6))

if sys.argv[1] == "serve":
    serve(sys.argv[2], int(sys.argv[3]))
else:
    get(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
PY
for side in sshd gw; do
	sshx "$side" "mkdir -p ${rdir[$side]} && cat >${rdir[$side]}/tcpbench.py" <"$work/tcpbench.py" ||
		die "copying the TCP source/sink to ${name[$side]} failed"
	to "$side" # run in the background as a plain command, so $! is ssh's pid
	"${cmd[@]}" -o ExitOnForwardFailure=yes -L "${lport[$side]}:127.0.0.1:$tcp_port" \
		"exec python3 ${rdir[$side]}/tcpbench.py serve 127.0.0.1 $tcp_port" \
		<&8 >"$work/tcp-$side.out" 2>"$work/tcp-$side.err" &
	pids+=($!)
	for _ in $(seq 200); do
		grep -q ready "$work/tcp-$side.out" 2>/dev/null && [ -n "$(ss -Hltn "sport = :${lport[$side]}")" ] && break
		kill -0 "$!" 2>/dev/null || break
		sleep 0.05
	done
	grep -q ready "$work/tcp-$side.out" || die "the -L session to ${name[$side]} did not start: $(cat "$work/tcp-$side.err")"
done
forward() { # forward SIDE down|up: one run through the forward, in µs
	python3 "$work/tcpbench.py" get "${lport[$1]}" "$2" "$bytes" 2>"$work/fwd.err" ||
		die "-L $2 via ${name[$1]} failed: $(cat "$work/fwd.err")"
}
for _ in $(seq "$runs"); do
	for side in sshd gw; do
		for dir in down up; do
			us=$(forward "$side" "$dir")
			add "fwd-$dir" "$side" "$(mbps "$bytes" "$us")"
		done
	done
done
echo "bench: -L done" >&2

# --- logins/s at 10 and 50 concurrent -----------------------------------------
for c in 10 50; do
	for _ in $(seq "$runs"); do
		for side in sshd gw; do
			t0=$(us_now)
			to "$side"
			seq "$logins" | xargs -P "$c" -I{} "${cmd[@]}" true \
				2>"$work/logins.err" || die "$logins logins to ${name[$side]}, $c at a time: some failed: $(sort -u "$work/logins.err" | head -5)"
			add "logins-$c" "$side" "$(awk -v n="$logins" -v us=$(($(us_now) - t0)) 'BEGIN { printf "%.1f", n / us * 1e6 }')"
		done
	done
	echo "bench: logins at $c done" >&2
done

# --- RSS at BENCH_IDLE idle connections, each with a session running cat ------
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
descendants() { # pids of the descendants of $1 whose command is $2
	ps -e -o pid=,ppid=,comm= | awk -v top="$1" -v want="$2" '
		{ parent[$1] = $2; comm[$1] = $3 }
		END { for (p in parent) { q = p; while (q in parent && q != top && q > 1) q = parent[q]
			if (q == top && p != top && comm[p] == want) print p } }'
}
sshd_mem() { # "RSS PSS" in KiB, summed over sshd's per-connection processes
	local p files=()
	for p in $(descendants "$sshd_pid" sshd); do files+=("/proc/$p/smaps_rollup"); done
	[ ${#files[@]} -gt 0 ] || die "no sshd processes under $sshd_pid"
	cat "${files[@]}" 2>/dev/null | awk '/^Rss:/ { r += $2 } /^Pss:/ { s += $2 } END { print r + 0, s + 0 }' 
}
idle_open() { # open idle_n connections to SIDE, 25 at a time, each waiting to report in
	local side=$1 i deadline=$((SECONDS + idle_timeout)) n
	: >"$work/idle.out"
	: >"$work/idle.err"
	to "$side"
	for ((i = 1; i <= idle_n; i++)); do
		"${cmd[@]}" 'echo ok; exec cat' <&8 >>"$work/idle.out" 2>>"$work/idle.err" &
		idle_pids+=($!)
		if ((i % 25 == 0 || i == idle_n)); then
			while n=$(wc -l <"$work/idle.out") && ((n < i)); do
				[ ! -s "$work/idle.err" ] || die "idle connection to ${name[$side]} failed: $(sort -u "$work/idle.err" | head -3)"
				((SECONDS < deadline)) || die "only $n of $idle_n idle connections to ${name[$side]} came up in ${idle_timeout}s"
				sleep 0.1
			done
		fi
	done
	sleep 2 # let the servers settle
}
idle_close() {
	kill "${idle_pids[@]}" 2>/dev/null || true
	for p in "${idle_pids[@]}"; do wait "$p" 2>/dev/null || true; done
	idle_pids=()
}
idle_open sshd
for _ in $(seq "$runs"); do
	m=$(sshd_mem)
	read -r rss pss <<<"$m"
	add idle-rss sshd "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')"
	add idle-pss sshd "$(awk -v k="$pss" 'BEGIN { printf "%.1f", k / 1024 }')"
	sleep 1
done
idle_close
echo "bench: idle sshd done" >&2
agent_rss() { # KiB: the agent, PID 1 of the container (init) and its re-executed serving child
	local init exe p t=0
	init=$(docker inspect -f '{{.State.Pid}}' "$ctr")
	exe=$(readlink "/proc/$init/exe")
	t=$(rss_kib "$init")
	for p in $(ps -o pid= --ppid "$init"); do # the child runs /proc/self/exe: the same file
		[ "$(readlink "/proc/$p/exe")" != "$exe" ] || t=$((t + $(rss_kib "$p")))
	done
	echo "$t"
}
gw_rss0=$(rss_kib "$gw_pid")
agent_rss0=$(agent_rss)
idle_open gw
for _ in $(seq "$runs"); do
	r=$(rss_kib "$gw_pid")
	s=$(awk '/^Pss:/ { print $2 }' "/proc/$gw_pid/smaps_rollup")
	add idle-rss gw "$(awk -v k="$r" 'BEGIN { printf "%.1f", k / 1024 }')"
	add idle-pss gw "$(awk -v k="$s" 'BEGIN { printf "%.1f", k / 1024 }')"
	add idle-agent gw "$(awk -v k="$(agent_rss)" 'BEGIN { printf "%.1f", k / 1024 }')"
	sleep 1
done
idle_close
echo "bench: idle gateway done" >&2

# --- the table ----------------------------------------------------------------
rows=() # "figure|sshd|gateway|ratio"
row() { # row LABEL KEY better(higher|lower) [SCALE]
	local a b ratio
	a=$(median "$2" sshd)
	b=$(median "$2" gw)
	if [ "$3" = higher ]; then
		ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')
	else
		ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')
	fi
	if [ "${4:-}" = ms ]; then a=$(ms "$a") b=$(ms "$b"); fi
	rows+=("$1|$a|$b|$ratio")
}
row "warm login, ms (lower is better)" warm lower ms
row "cold login, ms; sshd column: docker run --rm" cold lower ms
for tool in sftp "scp -O" rsync; do
	for dir in down up; do
		k=${tool%% *}
		row "$tool ${dir}load, MB/s" "$k-$dir" higher
	done
done
row "ssh host 'head -c N /dev/zero', MB/s" cat-down higher
row "ssh host 'cat >/dev/null', MB/s" cat-up higher
row "-L download, MB/s" fwd-down higher
row "-L upload, MB/s" fwd-up higher
row "RSS at $idle_n idle (sshd: sum), MiB" idle-rss lower
row "PSS at $idle_n idle (sshd: sum), MiB" idle-pss lower
rows+=("agent RSS at $idle_n idle, MiB (before: $(awk -v k="$agent_rss0" 'BEGIN { printf "%.1f", k / 1024 }'))|-|$(median idle-agent gw)|-")
rows+=("gateway RSS before the idle connections, MiB|-|$(awk -v k="$gw_rss0" 'BEGIN { printf "%.1f", k / 1024 }')|-")
row "logins/s, 10 concurrent" logins-10 higher
row "logins/s, 50 concurrent" logins-50 higher

header="$size_mb MiB transfers, median of $runs runs; $idle_n idle connections; $logins logins a burst; cipher $cipher, ed25519 host keys; $(ssh -V 2>&1 | cut -d, -f1)"
printf '%s\n' "$header"
printf '%-46s %10s %10s %7s\n' "" sshd gateway ratio
for r in "${rows[@]}"; do
	IFS='|' read -r f a b q <<<"$r"
	printf '%-46s %10s %10s %7s\n' "$f" "$a" "$b" "$q"
done
echo "(ratio above 1: the gateway did better; cold login: docker run time / the gateway's)"

if [ -n "$results" ]; then
	mkdir -p "$(dirname "$results")"
	[ -s "$results" ] || printf '# The gateway against OpenSSH sshd on loopback\n\nWritten by %s (%s), one section a run, the newest last.\n' \
		"\`scripts/bench.sh\`" "\`make bench\`" >"$results"
	{
		printf '\n## %s\n\n' "$(date -u)"
		printf -- '- commit %s\n' "$(git describe --always --dirty 2>/dev/null || echo unknown)"
		printf -- '- %s cores, %s, kernel %s\n' "$(nproc)" "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" "$(uname -r)"
		printf -- '- %s\n\n' "$header"
		printf '| figure | sshd | gateway | ratio (>1: gateway better) |\n|---|---:|---:|---:|\n'
		for r in "${rows[@]}"; do
			IFS='|' read -r f a b q <<<"$r"
			printf '| %s | %s | %s | %s |\n' "$f" "$a" "$b" "$q"
		done
	} >>"$results"
	echo "bench: appended to $results" >&2
fi
