// SPDX-License-Identifier: GPL-2.0-only OR MIT
/* Kernel side of cache-probe: copies what selected processes send and
 * receive on TCP connections to Redis ports into one ring buffer.
 *
 * How a syscall is seen: the socket layer's sock_send_length /
 * sock_recv_length tracepoints (tp_btf) fire inside every socket send and
 * receive once the bytes have moved, with the socket (its ports and cookie,
 * without walking the fd table) and the count; the syscall's user buffer
 * (or iovec array) is read from the thread's saved registers. A call of at
 * most BATCHED_CAPTURE bytes from one buffer is added, as a record, to its
 * CPU's batch, which is handed over to the ring buffer whole (see probe.h);
 * larger calls and iovecs are copied in MAX_CAPTURE-byte records of their
 * own, up to MAX_SYSCALL_CAPTURE bytes. Nothing wakes the reader per event:
 * it drains on a timer. Every program filters on the process first: only
 * processes in `followed` pay more than a bit test, and no syscall
 * tracepoint is attached, so other processes (and the followed ones' file
 * and pipe I/O) run none of this code.
 *
 * Processes are selected by the Rust side (--pid, --comm, a scan of
 * existing sockets) and, in discovery mode, here: a process that connects to
 * or listens on a watched port joins `followed` at that moment, before it sends
 * anything. */

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "kernel.h"
#include "probe.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define MSG_PEEK 2

/* Followed processes, one bit per process id (up to PID_MAX_LIMIT): every
 * socket send and receive on the host tests one bit, not a hash lookup.
 * User space maps it and sets bits with atomic ORs, as the programs do. */
#define PID_LIMIT 4194304

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, PID_LIMIT / 64);
	__type(key, __u32);
	__type(value, __u64);
} followed SEC(".maps");

/* Watched ports on which a followed process of this host listens. A local
 * client of such a server is not captured: the server's side of the
 * connection already shows every command (capturing both would double the
 * work for nothing). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32);   /* port */
	__type(value, __u32); /* unused */
} listeners SEC(".maps");

/* Client sockets already named by an EVENT_CLIENT. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);   /* socket cookie */
	__type(value, __u32); /* unused */
} named SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} config SEC(".maps");

#define RING_SIZE (16 * 1024 * 1024)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING_SIZE);
} events SEC(".maps");

/* Each CPU's batch of records (see BATCH_SIZE in probe.h): its state, in a
 * map user space reads in place, and its bytes. Both are indexed by CPU;
 * the loader sizes them to the number of CPUs. Only programs running on a
 * CPU touch its batch, and they never run two at a time there: the socket
 * tracepoints run in process context with preemption disabled, and
 * flush_batch runs in an interrupt on that CPU, which `busy` keeps away
 * from a batch being written. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct batch_state);
} batch_states SEC(".maps");

/* Room for a full batch plus the largest record that starts within it,
 * so that every write at a bounded offset is in bounds. */
struct batch {
	unsigned char data[BATCH_SIZE + sizeof(struct event_header) + BATCHED_CAPTURE];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct batch);
} batches SEC(".maps");

/* A record being assembled, and the copy it is part of: too large for the
 * BPF stack. The payload area is twice MAX_CAPTURE so that masked offsets
 * keep every copy in bounds; the header and payload are handed over as one
 * record. One per CPU, in a plain array indexed by CPU (a per-CPU map's values are
 * limited to 32 KiB); the loader sizes it to the number of CPUs. */
/* One syscall's bytes being copied out, record by record: the state of
 * copy_step, which bpf_loop calls until it says it is done. It lives in the
 * scratch map, not on the stack: the verifier then checks one step for any
 * state instead of following every iteration with known values. */
struct copy {
	__u64 iovecs;   /* user iovec array; 0: a plain buffer */
	__u32 iovcnt;
	__u32 next_iov; /* next iovec entry to read */
	__u64 base;     /* user bytes of the current piece not yet copied */
	__u64 left;
	__u32 length;   /* bytes the syscall moved */
	__u32 total;    /* of which captured: at most MAX_SYSCALL_CAPTURE */
	__u32 sent;     /* bytes already handed over in records */
	__u32 filled;   /* bytes in the scratch record now */
	__u32 stopped;  /* a record could not be handed over */
	__u32 _pad;
};

struct scratch {
	struct copy copy;
	struct event_header header;
	unsigned char data[2 * MAX_CAPTURE];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* The process's name, as in /proc/<pid>/comm: its main thread's, not the
 * calling thread's (a Tokio worker is named "tokio-runtime-w"). */
static __always_inline void process_name(char *comm)
{
	/* A BTF pointer: group_leader is a direct load, the name one copy. */
	struct task_struct *task = bpf_get_current_task_btf();
	bpf_probe_read_kernel(comm, 16, task->group_leader->comm);
}

static __always_inline void count(__u32 which, __u64 n)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &which);
	if (value)
		*value += n;
}

static __always_inline int selected(__u32 tgid)
{
	__u32 word = tgid / 64;
	__u64 *bits = bpf_map_lookup_elem(&followed, &word);
	return bits && ((*bits >> (tgid % 64)) & 1);
}

static __always_inline void follow(__u32 tgid)
{
	__u32 word = tgid / 64;
	__u64 *bits = bpf_map_lookup_elem(&followed, &word);
	if (bits)
		__sync_fetch_and_or(bits, 1ULL << (tgid % 64));
}

static __always_inline int watched_port(struct settings *s, __u16 port)
{
	for (int i = 0; i < MAX_PORTS; i++) {
		if (i >= s->port_count)
			break;
		if (s->ports[i] == port)
			return 1;
	}
	return 0;
}

/* The ends of `sk`, IPv4 mapped into IPv6. */
static __always_inline void read_ends(struct sock *sk, struct endpoints *ends)
{
	/* `sk` is a tracepoint's BTF argument: its fields are direct loads,
	 * not a helper call each (every data event reads them). */
	__u16 family = sk->__sk_common.skc_family;
	ends->local_port = sk->__sk_common.skc_num;
	/* Closing, the socket has given its port back (skc_num is 0 by the
	 * time inet_sock_set_state reports TCP_CLOSE); inet_sport keeps it. */
	if (!ends->local_port)
		ends->local_port = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	ends->remote_port = bpf_ntohs(sk->__sk_common.skc_dport);
	if (family == AF_INET) {
		__u32 local = sk->__sk_common.skc_rcv_saddr;
		__u32 remote = sk->__sk_common.skc_daddr;
		ends->local_addr[10] = 0xff;
		ends->local_addr[11] = 0xff;
		ends->remote_addr[10] = 0xff;
		ends->remote_addr[11] = 0xff;
		__builtin_memcpy(&ends->local_addr[12], &local, 4);
		__builtin_memcpy(&ends->remote_addr[12], &remote, 4);
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&ends->local_addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&ends->remote_addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

/* Whether `ends` is the client end of a connection to a followed server of
 * this host (loopback, or the same address at both ends). */
static __always_inline int server_side_seen(struct endpoints *ends)
{
	__u32 port = ends->remote_port;
	if (!bpf_map_lookup_elem(&listeners, &port))
		return 0;
	const __u8 *r = ends->remote_addr;
	int v4 = r[10] == 0xff && r[11] == 0xff;
	if (v4 && r[12] == 127)
		return 1;
	int v6_loopback = !v4 && r[15] == 1;
	for (int i = 0; i < 15 && v6_loopback; i++)
		v6_loopback = r[i] == 0;
	if (v6_loopback)
		return 1;
	for (int i = 0; i < 16; i++)
		if (r[i] != ends->local_addr[i])
			return 0;
	return 1;
}

/* Tells the reader, once per socket, which process is the client of a
 * connection whose server side it sees. */
static __always_inline void name_client(struct sock *sk, struct endpoints *ends, __u32 tgid)
{
	__u64 cookie = bpf_get_socket_cookie(sk);
	if (bpf_map_lookup_elem(&named, &cookie))
		return;
	__u32 one = 1;
	bpf_map_update_elem(&named, &cookie, &one, BPF_ANY);
	struct event_header h = {};
	h.timestamp_ns = bpf_ktime_get_ns();
	h.socket_cookie = cookie;
	h.tgid = tgid;
	h.kind = EVENT_CLIENT;
	h.ends = *ends;
	process_name(h.comm);
	if (bpf_ringbuf_output(&events, &h, sizeof(h), BPF_RB_NO_WAKEUP) != 0)
		count(COUNTER_LOST, 1);
}

/* Hand-over flags: no wake-up (the reader drains on a timer), unless the
 * ring buffer is filling up, when waking the reader at once is cheaper
 * than losing records. */
static __always_inline __u64 handover_flags(void)
{
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > RING_SIZE / 4)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* Hands over this CPU's batch as one ring buffer record. */
static __always_inline void flush(struct batch_state *st, struct batch *b)
{
	__u64 flags = handover_flags();
	/* Bounded right before the call, for the verifier. */
	__u64 used = st->used;
	barrier_var(used);
	if (used == 0 || used > BATCH_SIZE)
		return;
	if (bpf_ringbuf_output(&events, b->data, used, flags) != 0)
		count(COUNTER_LOST, st->records);
	st->used = 0;
	st->records = 0;
}

/* Hands over the scratch record (its header was filled by end()). */
static __always_inline int emit(struct scratch *out)
{
	struct copy *c = &out->copy;
	__u32 done = c->sent + c->filled;
	out->header.offset = c->sent;
	out->header.captured = c->filled;
	out->header.flags = done >= c->total ? RECORD_LAST : 0;
	/* At most MAX_CAPTURE; the mask says so to the verifier. */
	__u64 size = c->filled;
	barrier_var(size);
	size &= 2 * MAX_CAPTURE - 1;
	size += sizeof(struct event_header);
	if (bpf_ringbuf_output(&events, &out->header, size, handover_flags()) != 0) {
		count(COUNTER_LOST, 1);
		c->stopped = 1;
		return 1;
	}
	c->sent = done;
	c->filled = 0;
	return done >= c->total;
}

/* One step: take the next iovec entry, or copy what fits of the current
 * piece into the record, handing the record over when it is full or the
 * syscall's bytes are all in. Returns 1 when there is nothing left to do. */
static long copy_step(__u64 index, void *data)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct scratch *out = bpf_map_lookup_elem(&scratch, &cpu);
	if (!out)
		return 1;
	struct copy *c = &out->copy;
	if (c->left == 0) {
		if (c->iovecs == 0 || c->next_iov >= c->iovcnt || c->next_iov >= MAX_IOVECS)
			return 1;
		struct iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov),
					(const void *)(c->iovecs + c->next_iov * sizeof(struct iovec))))
			return 1;
		c->next_iov++;
		c->base = (__u64)iov.iov_base;
		c->left = iov.iov_len;
		return 0;
	}
	__u64 part = c->left;
	__u32 room = MAX_CAPTURE - c->filled;
	__u32 wanted = c->total - c->sent - c->filled;
	if (part > room)
		part = room;
	if (part > wanted)
		part = wanted;
	if (part == 0)
		return 1;
	/* The bounds, for the verifier: the offset below MAX_CAPTURE, the size
	 * between 1 and MAX_CAPTURE (which `part` is: the masks change
	 * nothing), in a buffer of twice that. */
	__u32 offset = c->filled;
	barrier_var(offset);
	offset &= MAX_CAPTURE - 1;
	__u64 size = part - 1;
	barrier_var(size);
	size = (size & (MAX_CAPTURE - 1)) + 1;
	/* Bytes that cannot be read are zeros (the helper clears them). */
	bpf_probe_read_user(&out->data[offset], size, (const void *)c->base);
	c->base += size;
	c->left -= size;
	c->filled += size;
	if (c->filled >= MAX_CAPTURE || c->sent + c->filled >= c->total)
		return emit(out);
	return 0;
}

/* Steps enough for MAX_RECORDS records over MAX_IOVECS iovec entries. */
#define COPY_STEPS (2 * MAX_IOVECS + 2 * MAX_RECORDS)

/* What every data record of one syscall says about it: when, which socket
 * and process, which way, how many bytes it moved, and (on a client end)
 * the process's name. */
static __always_inline void data_header(struct event_header *h, __u32 direction, __u32 moved,
					struct endpoints *ends, __u64 cookie, __u32 tgid,
					int client_end)
{
	h->timestamp_ns = bpf_ktime_get_ns();
	h->socket_cookie = cookie;
	h->tgid = tgid;
	h->kind = EVENT_DATA;
	h->direction = direction;
	h->length = moved;
	h->ends = *ends;
	if (client_end)
		process_name(h->comm);
	else
		__builtin_memset(h->comm, 0, sizeof(h->comm));
}

/* The common case, one buffer of at most BATCHED_CAPTURE bytes: its record
 * is written straight into this CPU's batch (no scratch copy, and the
 * ring buffer's reservation, the costliest step, once a batch). */
static __always_inline void capture_batched(__u64 buf, __u32 direction, __u32 moved,
					    struct endpoints *ends, __u64 cookie, __u32 tgid,
					    int client_end)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct batch_state *st = bpf_map_lookup_elem(&batch_states, &cpu);
	struct batch *b = bpf_map_lookup_elem(&batches, &cpu);
	if (!st || !b)
		return;
	/* Between 1 and BATCHED_CAPTURE (the mask changes nothing). */
	__u32 size = moved - 1;
	barrier_var(size);
	size = (size & (BATCHED_CAPTURE - 1)) + 1;
	__u32 length = (sizeof(struct event_header) + size + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1);
	st->busy = 1;
	barrier();
	if (st->used + length > BATCH_SIZE)
		flush(st, b);
	__u32 at = st->used;
	barrier_var(at);
	if (at <= BATCH_SIZE) {
		struct event_header *h = (void *)&b->data[at];
		data_header(h, direction, moved, ends, cookie, tgid, client_end);
		h->captured = size;
		h->offset = 0;
		h->flags = RECORD_LAST;
		/* Bytes that cannot be read are zeros (the helper clears them). */
		bpf_probe_read_user(&b->data[at + sizeof(struct event_header)], size,
				    (const void *)buf);
		if (st->records == 0)
			st->first_ns = h->timestamp_ns;
		st->used = at + length;
		st->records += 1;
	}
	barrier();
	st->busy = 0;
}

/* Copies what the syscall moved (`moved` bytes, from `buf`, or the iovec
 * array `buf` of `iovcnt` entries) into records, and hands them over. */
static __always_inline void capture(__u64 buf, __u32 iovcnt, __u32 direction, long moved,
				    struct endpoints *ends, __u64 cookie, __u32 tgid,
				    int client_end)
{
	if (iovcnt == 0 && moved <= BATCHED_CAPTURE) {
		capture_batched(buf, direction, moved, ends, cookie, tgid, client_end);
		return;
	}
	__u32 cpu = bpf_get_smp_processor_id();
	struct scratch *out = bpf_map_lookup_elem(&scratch, &cpu);
	if (!out)
		return;
	struct copy *c = &out->copy;
	__builtin_memset(c, 0, sizeof(*c));
	c->length = moved;
	c->total = c->length > MAX_SYSCALL_CAPTURE ? MAX_SYSCALL_CAPTURE : c->length;
	if (iovcnt == 0) {
		c->base = buf;
		c->left = c->total;
	} else {
		c->iovecs = buf;
		c->iovcnt = iovcnt;
	}
	struct event_header *h = &out->header;
	data_header(h, direction, c->length, ends, cookie, tgid, client_end);
	if (iovcnt == 0 && c->total <= MAX_CAPTURE) {
		/* The common case, one record from one buffer: no loop. The
		 * size is between 1 and MAX_CAPTURE (the mask changes nothing). */
		__u64 size = c->total - 1;
		barrier_var(size);
		size = (size & (MAX_CAPTURE - 1)) + 1;
		bpf_probe_read_user(out->data, size, (const void *)buf);
		c->filled = size;
		emit(out);
		return;
	}
	bpf_loop(COPY_STEPS, copy_step, NULL, 0);
	/* Fewer bytes than moved could be read (an iovec array shorter than
	 * the syscall said): what was read ends the syscall's records. */
	if (!c->stopped && c->sent < c->total) {
		c->total = c->sent + c->filled;
		emit(out);
	}
	if (c->length > MAX_SYSCALL_CAPTURE)
		count(COUNTER_TRUNCATED, 1);
}

/* Bytes sent or received on a socket by a followed process: the socket
 * layer's tracepoint, inside the syscall, once the bytes have moved. The
 * user buffer is the syscall's own argument, read from the thread's saved
 * registers: no syscall tracepoint is attached, so the syscalls of every
 * other process (and the followed ones' file and pipe I/O) cost nothing. */
static __always_inline void on_socket(struct sock *sk, int moved, int flags, __u32 direction)
{
	if (moved <= 0)
		return;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!selected(tgid))
		return;
	/* A peek leaves the bytes for the read that follows. */
	if (direction == DIR_RECV && (flags & MSG_PEEK))
		return;
	__u32 zero = 0;
	struct settings *s = bpf_map_lookup_elem(&config, &zero);
	if (!s)
		return;
	struct endpoints ends = {};
	read_ends(sk, &ends);
	/* The client end of a connection: its remote port is watched. Only
	 * there can the server be a followed one of this host, and only there
	 * is the process's name read (the reader names a server end's client
	 * otherwise). */
	int client_end = watched_port(s, ends.remote_port);
	if (!client_end && !watched_port(s, ends.local_port))
		return;
	if (client_end && server_side_seen(&ends)) {
		name_client(sk, &ends, tgid);
		return;
	}
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	long nr = SYSCALL_NR(regs);
	__u64 buf = SYSCALL_ARG2(regs);
	__u32 iovcnt = 0;
	if (nr == SYS_readv || nr == SYS_writev) {
		iovcnt = SYSCALL_ARG3(regs);
	} else if (nr == SYS_sendmsg || nr == SYS_recvmsg) {
		struct user_msghdr hdr = {};
		if (bpf_probe_read_user(&hdr, sizeof(hdr), (const void *)buf) || hdr.msg_iovlen == 0)
			return;
		buf = (__u64)hdr.msg_iov;
		iovcnt = hdr.msg_iovlen;
	} else if (nr != SYS_read && nr != SYS_write && nr != SYS_sendto && nr != SYS_recvfrom) {
		/* sendfile, splice, io_uring, sendmmsg…: not followed. */
		return;
	}
	capture(buf, iovcnt, direction, moved, &ends, bpf_get_socket_cookie(sk), tgid, client_end);
}

/* The signature is (struct sock *sk, int ret, int flags): the tracefs
 * format's family/protocol fields are not arguments. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send, struct sock *sk, int ret, int flags) { on_socket(sk, ret, flags, DIR_SEND); return 0; }
SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv, struct sock *sk, int ret, int flags) { on_socket(sk, ret, flags, DIR_RECV); return 0; }

/* A client of a followed local server, between connect() and the
 * handshake's end (its local port is only known then). */
struct connecting {
	__u32 tgid;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock * */
	__type(value, struct connecting);
} connecting SEC(".maps");

static __always_inline int same_name(const char *a, const char *b)
{
	for (int i = 0; i < 16; i++) {
		if (a[i] != b[i])
			return 0;
		if (!a[i])
			break;
	}
	return 1;
}

/* Discovery: a process connecting to, or listening on, a watched port; and
 * the naming of local clients whose server is followed. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, struct sock *sk, int oldstate, int newstate)
{
	if (newstate != TCP_SYN_SENT && newstate != TCP_LISTEN && newstate != TCP_CLOSE &&
	    !(newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_SENT))
		return 0;
	__u32 zero = 0;
	struct settings *s = bpf_map_lookup_elem(&config, &zero);
	if (!s)
		return 0;
	struct endpoints ends = {};
	read_ends(sk, &ends);
	__u64 key = (__u64)sk;
	if (newstate == TCP_ESTABLISHED) {
		/* In softirq context: the client was recorded at connect(). */
		struct connecting *c = bpf_map_lookup_elem(&connecting, &key);
		if (!c)
			return 0;
		struct event_header h = {};
		h.timestamp_ns = bpf_ktime_get_ns();
		h.socket_cookie = bpf_get_socket_cookie(sk);
		h.tgid = c->tgid;
		h.kind = EVENT_CLIENT;
		h.ends = ends;
		__builtin_memcpy(h.comm, c->comm, sizeof(h.comm));
		bpf_map_delete_elem(&connecting, &key);
		if (bpf_ringbuf_output(&events, &h, sizeof(h), BPF_RB_NO_WAKEUP) != 0)
			count(COUNTER_LOST, 1);
		return 0;
	}
	if (newstate == TCP_CLOSE) {
		bpf_map_delete_elem(&connecting, &key);
		/* Often in softirq context: the process is not known here, and
		 * need not be; the Rust side forgets the connection. */
		if (!watched_port(s, ends.remote_port) && !watched_port(s, ends.local_port))
			return 0;
		struct event_header closed = {};
		closed.timestamp_ns = bpf_ktime_get_ns();
		closed.socket_cookie = bpf_get_socket_cookie(sk);
		closed.kind = EVENT_CLOSED;
		closed.ends = ends;
		if (bpf_ringbuf_output(&events, &closed, sizeof(closed), 0) != 0)
			count(COUNTER_LOST, 1);
		return 0;
	}
	if (newstate == TCP_SYN_SENT && !watched_port(s, ends.remote_port))
		return 0;
	if (newstate == TCP_LISTEN && !watched_port(s, ends.local_port))
		return 0;
	struct event_header h = {};
	process_name(h.comm);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	int already = selected(tgid);
	if (!already && (!s->discover || tgid == s->ignore_tgid ||
			 (s->comm[0] && !same_name(h.comm, s->comm))))
		return 0;
	/* A client of a followed server of this host: the server's side shows
	 * its commands; the client is only named, once connected, and not
	 * followed for it (its every syscall would pay for nothing). */
	if (newstate == TCP_SYN_SENT && server_side_seen(&ends)) {
		struct connecting c = { .tgid = tgid };
		__builtin_memcpy(c.comm, h.comm, sizeof(c.comm));
		bpf_map_update_elem(&connecting, &key, &c, BPF_ANY);
		return 0;
	}
	__u32 one = 1;
	if (!already)
		follow(tgid);
	if (newstate == TCP_LISTEN) {
		__u32 port = ends.local_port;
		bpf_map_update_elem(&listeners, &port, &one, BPF_ANY);
	}
	h.timestamp_ns = bpf_ktime_get_ns();
	h.socket_cookie = bpf_get_socket_cookie(sk);
	h.tgid = tgid;
	h.kind = EVENT_DISCOVERED;
	h.direction = newstate == TCP_LISTEN ? DIR_RECV : DIR_SEND;
	h.ends = ends;
	if (bpf_ringbuf_output(&events, &h, sizeof(h), 0) != 0)
		count(COUNTER_LOST, 1);
	return 0;
}

/* Hands over the batch of the CPU it runs on: user space runs it (BPF
 * test run, on a given CPU) for every CPU whose batch holds records, before
 * each drain. Returns 1 when a record is being added there (try again). */
SEC("raw_tp")
int flush_batch(void *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct batch_state *st = bpf_map_lookup_elem(&batch_states, &cpu);
	struct batch *b = bpf_map_lookup_elem(&batches, &cpu);
	if (!st || !b)
		return 0;
	if (st->busy)
		return 1;
	flush(st, b);
	return 0;
}
