// SPDX-License-Identifier: GPL-2.0-only OR MIT
/* Kernel side of cache-probe: copies what selected processes send and
 * receive on TCP connections to Redis ports into one ring buffer.
 *
 * How a syscall is seen: its sys_enter tracepoint records the user buffer
 * (or iovec array) of the calling thread; while the syscall runs,
 * sock_send_length / sock_recv_length (tp_btf) give the socket, so the
 * connection's ports and cookie are known without walking the fd table;
 * its sys_exit tracepoint, knowing how many bytes moved, copies up to
 * MAX_SYSCALL_CAPTURE of them into the ring buffer, MAX_CAPTURE bytes per
 * record, without waking the reader (it drains on a timer). Every program filters on the process first: only
 * processes in `pids` pay more than a map lookup.
 *
 * Processes are selected by the Rust side (--pid, --comm, a scan of
 * existing sockets) and, in discovery mode, here: a process that connects to
 * or listens on a watched port joins `pids` at that moment, before it sends
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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);   /* tgid */
	__type(value, __u32); /* unused */
} pids SEC(".maps");

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

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024);
} events SEC(".maps");

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
	return bpf_map_lookup_elem(&pids, &tgid) != NULL;
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
	if (bpf_ringbuf_output(&events, &out->header, size, BPF_RB_NO_WAKEUP) != 0) {
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

/* The common case, one buffer of at most SMALL_CAPTURE bytes: written
 * straight into a record reserved in the ring buffer (no scratch copy, no
 * second copy into the ring). The record has room for SMALL_CAPTURE bytes
 * whatever the call moved; the reader takes `captured` of them. */
#define SMALL_CAPTURE 256

struct small_record {
	struct event_header header;
	unsigned char data[SMALL_CAPTURE];
};

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

static __always_inline void capture_small(__u64 buf, __u32 direction, __u32 moved,
					  struct endpoints *ends, __u64 cookie, __u32 tgid,
					  int client_end)
{
	struct small_record *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		count(COUNTER_LOST, 1);
		return;
	}
	struct event_header *h = &r->header;
	data_header(h, direction, moved, ends, cookie, tgid, client_end);
	h->captured = moved;
	h->offset = 0;
	h->flags = RECORD_LAST;
	/* Between 1 and SMALL_CAPTURE (the mask changes nothing). */
	__u32 size = moved - 1;
	barrier_var(size);
	size = (size & (SMALL_CAPTURE - 1)) + 1;
	/* Bytes that cannot be read are zeros (the helper clears them). */
	bpf_probe_read_user(r->data, size, (const void *)buf);
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

/* Copies what the syscall moved (`moved` bytes, from `buf`, or the iovec
 * array `buf` of `iovcnt` entries) into records, and hands them over. */
static __always_inline void capture(__u64 buf, __u32 iovcnt, __u32 direction, long moved,
				    struct endpoints *ends, __u64 cookie, __u32 tgid,
				    int client_end)
{
	if (iovcnt == 0 && moved <= SMALL_CAPTURE) {
		capture_small(buf, direction, moved, ends, cookie, tgid, client_end);
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
		bpf_map_update_elem(&pids, &tgid, &one, BPF_ANY);
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
