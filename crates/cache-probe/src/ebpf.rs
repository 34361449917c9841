//! The kernel boundary: checks that this machine can run the probe, loads
//! and attaches the programs of `src/bpf/probe.bpf.c`, selects processes,
//! and drains the ring buffer. All `unsafe` of the crate is here; the
//! layouts it reads are the skeleton's types, generated from
//! `src/bpf/probe.h`, the one header shared with the kernel side.

use std::mem::MaybeUninit;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use std::os::fd::AsFd as _;

use libbpf_rs::{MapCore, MapFlags, OpenObject, RingBufferBuilder};

mod skeleton {
    #![allow(
        clippy::all,
        clippy::pedantic,
        non_camel_case_types,
        dead_code,
        unused_imports
    )]
    include!(concat!(env!("OUT_DIR"), "/probe.skel.rs"));
}

use skeleton::types::{batch_state, event_header, settings};
use skeleton::{ProbeSkel, ProbeSkelBuilder};

/// Mirrors of the enums of `probe.h`.
pub const EVENT_DATA: u32 = 1;
pub const EVENT_DISCOVERED: u32 = 2;
pub const EVENT_CLOSED: u32 = 3;
pub const EVENT_CLIENT: u32 = 4;
pub const DIR_SEND: u32 = 1;
pub const DIR_RECV: u32 = 2;
pub const RECORD_LAST: u32 = 1;
const COUNTER_LOST: u32 = 0;
const COUNTER_TRUNCATED: u32 = 1;
const COUNTERS: u32 = 2;
const MAX_PORTS: usize = 16;
/// Records in a ring buffer record are padded to this (`RECORD_ALIGN`).
const RECORD_ALIGN: usize = 8;
/// `BPF_F_TEST_RUN_ON_CPU`: run a program on the CPU asked for.
const TEST_RUN_ON_CPU: u32 = 1;
/// Tries to flush a batch a program is adding to before giving up until
/// the next drain (each is a few microseconds; a record takes far less).
const FLUSH_TRIES: usize = 1000;

/// One record from the kernel; its bytes are in the [`Batch`] it came in.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub timestamp_ns: u64,
    pub cookie: u64,
    pub kind: u32,
    pub direction: u32,
    /// Bytes the syscall moved; the record holds those from `offset` on (a
    /// syscall that moved more than one record holds comes in several).
    pub length: u32,
    pub offset: u32,
    /// The syscall's last record: bytes past `offset` + its bytes were not
    /// captured.
    pub last: bool,
    pub ends: Ends,
    pub comm: Comm,
    /// Where its bytes are in its batch (set by [`Batch::push`]).
    pub data: std::ops::Range<usize>,
}

/// A connection's two ends, as the kernel reports them (IPv4 addresses
/// mapped into IPv6), made socket addresses only when needed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ends {
    local_addr: [u8; 16],
    remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
}

impl Ends {
    pub fn new(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> Ends {
        let raw = |addr: std::net::SocketAddr| match addr.ip() {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(v6) => v6.octets(),
        };
        Ends {
            local_addr: raw(local),
            remote_addr: raw(remote),
            local_port: local.port(),
            remote_port: remote.port(),
        }
    }

    pub fn local(&self) -> std::net::SocketAddr {
        address(&self.local_addr, self.local_port)
    }

    pub fn remote(&self) -> std::net::SocketAddr {
        address(&self.remote_addr, self.remote_port)
    }
}

/// Records drained together, their bytes in one buffer: reused from batch
/// to batch, so that reading a record allocates nothing.
#[derive(Debug, Default)]
pub struct Batch {
    events: Vec<Event>,
    bytes: Vec<u8>,
}

impl Batch {
    /// Adds `event`, whose bytes are `data`.
    pub fn push(&mut self, mut event: Event, data: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        event.data = start..self.bytes.len();
        self.events.push(event);
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The bytes of `event`, one of this batch's.
    pub fn data(&self, event: &Event) -> &[u8] {
        &self.bytes[event.data.clone()]
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Puts the events in the order they were taken (their order of
    /// arrival among equals), and moves those taken at or after `from_ns`
    /// to `later`.
    pub fn split_off_from(&mut self, from_ns: u64, later: &mut Batch) {
        if !self.events.is_sorted_by_key(|e| e.timestamp_ns) {
            self.events.sort_by_key(|e| e.timestamp_ns);
        }
        let keep = self.events.partition_point(|e| e.timestamp_ns < from_ns);
        for event in self.events.drain(keep..) {
            let data = &self.bytes[event.data.clone()];
            later.push(event, data);
        }
    }

    pub fn clear(&mut self) {
        self.events.clear();
        self.bytes.clear();
    }
}

/// A process name as the kernel reports it (up to 15 bytes, NUL-padded),
/// made a `String` only when a new connection needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Comm([u8; 16]);

impl Comm {
    pub fn new(name: &str) -> Comm {
        let mut comm = [0; 16];
        for (slot, b) in comm.iter_mut().zip(name.bytes().take(15)) {
            *slot = b;
        }
        Comm(comm)
    }

    pub fn name(&self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }
}

/// The capture's counters: records and bytes as read from the ring
/// buffer, losses and truncations as counted by the kernel side (summed
/// over CPUs).
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelCounters {
    pub events: u64,
    pub bytes: u64,
    pub lost: u64,
    pub truncated: u64,
}

/// What the kernel programs are told before they are attached.
pub struct Selection<'a> {
    pub ports: &'a [u16],
    /// Follow every process that connects to or listens on a port.
    pub discover: bool,
    /// With discovery, only processes with this name.
    pub comm: Option<&'a str>,
}

/// Checks, before anything is loaded, what the probe needs; each failure
/// says what to do about it rather than showing a verifier log.
pub fn preflight() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 && !has_capability(CAP_BPF) {
        bail!(
            "cache-probe needs root, or the CAP_BPF and CAP_PERFMON capabilities \
             (e.g. `sudo cache-probe …`, or in Kubernetes a privileged container)"
        );
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!(
            "this kernel does not expose its BTF (/sys/kernel/btf/vmlinux): \
             cache-probe needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (5.8 or newer)"
        );
    }
    ensure_tracefs()?;
    for event in ["sock/sock_send_length", "sock/inet_sock_set_state"] {
        if !tracefs_root()
            .map(|root| root.join("events").join(event).exists())
            .unwrap_or(false)
        {
            bail!(
                "the kernel has no tracepoint {event}: cache-probe needs the sock tracepoints \
                 (Linux 5.17 or newer)"
            );
        }
    }
    Ok(())
}

const CAP_BPF: u32 = 39;

fn has_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

fn tracefs_root() -> Option<&'static Path> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("events").exists())
}

/// Tracepoints are attached through tracefs: mount it if it is not (as in
/// many containers), or say how.
fn ensure_tracefs() -> anyhow::Result<()> {
    if tracefs_root().is_some() {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: mount(2) with valid NUL-terminated strings and no data. Its
    // result is not the verdict: a failed mount is fine if tracefs is there
    // now (a second probe starting at the same moment mounted it first).
    unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        );
    }
    if tracefs_root().is_none() {
        bail!(
            "tracefs is not mounted and cannot be: mount it (`mount -t tracefs nodev \
             /sys/kernel/tracing`), or give the container /sys/kernel/tracing"
        );
    }
    Ok(())
}

/// The loaded, attached programs.
pub struct Probe {
    skel: ProbeSkel<'static>,
    /// Each CPU's batch state, mapped (see `batch_states` in probe.bpf.c).
    batch_states: Mapped<batch_state>,
    /// One bit per followed process (`followed` in probe.bpf.c).
    followed: Mapped<u64>,
    /// Data records read from the ring buffer, and their payload bytes.
    records: AtomicU64,
    record_bytes: AtomicU64,
}

/// What running `flush_batch` on a CPU did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    Done,
    /// A record was being added every time it ran.
    Busy,
    Impossible,
}

/// An mmap-able BPF array (`BPF_F_MMAPABLE`) mapped into this process:
/// read, or for `followed` updated with atomic operations, without a
/// system call.
struct Mapped<T> {
    base: std::ptr::NonNull<T>,
    len: usize,
    bytes: usize,
}

impl<T> Mapped<T> {
    /// Maps the `len` elements of the array `fd`.
    fn map(fd: std::os::fd::BorrowedFd<'_>, len: usize, writable: bool) -> anyhow::Result<Self> {
        use std::os::fd::AsRawFd;
        let bytes = (len * std::mem::size_of::<T>()).next_multiple_of(page_size());
        let protection = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: maps `bytes` bytes of an mmap-able BPF array of `len`
        // elements of `T` (its size rounded up to a page, as the kernel
        // allows), shared; the mapping is released in Drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                protection,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("cannot map a BPF array");
        }
        Ok(Mapped {
            base: std::ptr::NonNull::new(base.cast()).context("mmap gave a null mapping")?,
            len,
            bytes,
        })
    }

    fn element(&self, index: usize) -> *mut T {
        assert!(index < self.len, "element {index} of {}", self.len);
        // SAFETY: within the mapped array.
        unsafe { self.base.as_ptr().add(index) }
    }
}

impl<T> Drop for Mapped<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

impl Mapped<batch_state> {
    /// When the first record in `cpu`'s batch was taken, if it holds any.
    /// A racy read, and sound for its use (see `Probe::drain`): a record
    /// being added while it is read is not seen, and need not be.
    fn first_record(&self, cpu: usize) -> Option<u64> {
        let state = self.element(cpu);
        // SAFETY: a valid element of the mapping; the kernel writes it
        // concurrently, so its fields are read volatile (the first record's
        // time is written before the count that makes it one).
        unsafe {
            let used = std::ptr::addr_of!((*state).used).read_volatile();
            let first = std::ptr::addr_of!((*state).first_ns).read_volatile();
            (used > 0).then_some(first)
        }
    }
}

impl Mapped<u64> {
    /// The `followed` bitmap's word of `tgid`, as the programs update it.
    fn word(&self, tgid: u32) -> &AtomicU64 {
        // SAFETY: a valid, 8-byte aligned element of a shared mapping that
        // lives as long as `self`; the programs update it atomically too.
        unsafe { AtomicU64::from_ptr(self.element(tgid as usize / 64)) }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

impl Probe {
    /// Loads and attaches the programs. `object` must outlive the probe.
    pub fn load(
        object: &'static mut MaybeUninit<OpenObject>,
        selection: &Selection<'_>,
    ) -> anyhow::Result<Self> {
        if selection.ports.is_empty() || selection.ports.len() > MAX_PORTS {
            bail!("between 1 and {MAX_PORTS} Redis ports can be watched");
        }
        let mut open = ProbeSkelBuilder::default()
            .open(object)
            .context("cannot open the BPF object")?;
        // One scratch buffer and one batch per possible CPU (see probe.bpf.c).
        let cpus = libbpf_rs::num_possible_cpus().context("cannot count the CPUs")?;
        for map in [
            &mut open.maps.scratch,
            &mut open.maps.batches,
            &mut open.maps.batch_states,
        ] {
            map.set_max_entries(cpus as u32)
                .context("cannot size the per-CPU buffers")?;
        }
        let skel = open.load().map_err(|err| {
            anyhow::anyhow!(
                "the kernel refused the BPF programs ({err}); it needs BTF, ring buffers \
                 and BPF_PROG_TYPE_TRACING (Linux 5.17 or newer)"
            )
        })?;
        let batch_states = Mapped::map(skel.maps.batch_states.as_fd(), cpus, false)?;
        let followed = Mapped::map(
            skel.maps.followed.as_fd(),
            skel.maps.followed.max_entries() as usize,
            true,
        )?;
        let mut probe = Probe {
            skel,
            batch_states,
            followed,
            records: AtomicU64::new(0),
            record_bytes: AtomicU64::new(0),
        };
        probe.configure(selection)?;
        // Batches are handed over by running flush_batch on each CPU: a
        // kernel that cannot (BPF_PROG_TEST_RUN of a raw tracepoint program
        // on a given CPU, Linux 5.10) would hold records back for ever.
        probe
            .skel
            .progs
            .flush_batch
            .test_run(libbpf_rs::ProgramInput {
                cpu: 0,
                flags: TEST_RUN_ON_CPU,
                ..Default::default()
            })
            .context("cannot run the probe's flush program on a given CPU (Linux 5.10 or newer)")?;
        probe
            .skel
            .attach()
            .context("cannot attach the BPF programs to their tracepoints")?;
        Ok(probe)
    }

    fn configure(&mut self, selection: &Selection<'_>) -> anyhow::Result<()> {
        let mut config = settings {
            discover: u32::from(selection.discover),
            port_count: selection.ports.len() as u32,
            ignore_tgid: std::process::id(),
            ..Default::default()
        };
        config.ports[..selection.ports.len()].copy_from_slice(selection.ports);
        if let Some(comm) = selection.comm {
            for (slot, byte) in config.comm.iter_mut().zip(comm.bytes().take(15)) {
                *slot = byte as i8;
            }
        }
        // SAFETY: `settings` is a plain-old-data #[repr(C)] struct from the
        // skeleton; viewing it as bytes for the map update is sound.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&config as *const settings).cast::<u8>(),
                std::mem::size_of::<settings>(),
            )
        };
        self.skel
            .maps
            .config
            .update(&0u32.to_ne_bytes(), bytes, MapFlags::ANY)
            .context("cannot configure the BPF programs")
    }

    /// Follows `tgid` from now on.
    pub fn select(&self, tgid: u32) -> anyhow::Result<()> {
        if tgid as usize / 64 >= self.followed.len {
            bail!("cannot select process {tgid}: beyond the kernel's largest process id");
        }
        self.followed
            .word(tgid)
            .fetch_or(1 << (tgid % 64), Ordering::Relaxed);
        Ok(())
    }

    /// Records that a followed process listens on `port` (see the
    /// `listeners` map in probe.bpf.c).
    pub fn add_listener(&self, port: u16) -> anyhow::Result<()> {
        self.skel
            .maps
            .listeners
            .update(
                &u32::from(port).to_ne_bytes(),
                &1u32.to_ne_bytes(),
                MapFlags::ANY,
            )
            .context("cannot record a listener")
    }

    /// How many processes are followed now.
    pub fn followed(&self) -> usize {
        (0..self.followed.len)
            .map(|word| {
                let bits = self.followed.word(word as u32 * 64).load(Ordering::Relaxed);
                bits.count_ones() as usize
            })
            .sum()
    }

    pub fn counters(&self) -> KernelCounters {
        let mut totals = [0u64; COUNTERS as usize];
        for which in 0..COUNTERS {
            if let Ok(Some(per_cpu)) = self
                .skel
                .maps
                .counters
                .lookup_percpu(&which.to_ne_bytes(), MapFlags::ANY)
            {
                totals[which as usize] = per_cpu
                    .iter()
                    .filter_map(|v| Some(u64::from_ne_bytes(v.as_slice().try_into().ok()?)))
                    .sum();
            }
        }
        KernelCounters {
            events: self.records.load(Ordering::Relaxed),
            bytes: self.record_bytes.load(Ordering::Relaxed),
            lost: totals[COUNTER_LOST as usize],
            truncated: totals[COUNTER_TRUNCATED as usize],
        }
    }

    /// Drains the ring buffer every `every`, handing each batch of events
    /// to `handle`, in the order they were taken; returns when `keep_going`
    /// says to stop.
    ///
    /// Records reach the ring buffer a CPU's batch at a time, so records
    /// of one connection taken on two CPUs (its thread moved) may arrive
    /// out of order; they are put back in order by their timestamps, and
    /// a record is handed on only when none taken before it can still be
    /// in a batch: each round reads every CPU's batch state, then drains,
    /// and hands on the records taken before the oldest record still in a
    /// batch (and before the round began), keeping the rest for the next
    /// round. A record being added while the states are read belongs to a
    /// system call still running, and no later record of its connection's
    /// direction can be taken before that call returns: it cannot be
    /// overtaken. A batch that has held records for a whole round (its CPU
    /// went quiet) is handed over by running `flush_batch` on that CPU; the
    /// others hand themselves over as they fill. The kernel never wakes us
    /// per event: we drain on a timer, or at once when the ring buffer is
    /// filling up.
    pub fn drain(
        &self,
        every: Duration,
        mut handle: impl FnMut(&Batch),
        mut keep_going: impl FnMut(&Self) -> bool,
    ) -> anyhow::Result<()> {
        // Filled by the callback during `consume`, emptied after it.
        let batch = std::cell::RefCell::new(Batch::default());
        let mut later = Batch::default();
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&self.skel.maps.events, |data: &[u8]| {
                read_records(data, &mut batch.borrow_mut());
                0
            })
            .context("cannot read the ring buffer")?;
        let ring = builder.build().context("cannot read the ring buffer")?;
        let every_ns = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX);
        loop {
            let now = monotonic_ns();
            let horizon = self.settle_batches(now, now.saturating_sub(every_ns));
            ring.consume().context("cannot read the ring buffer")?;
            {
                let mut batch = batch.borrow_mut();
                if !batch.is_empty() {
                    batch.split_off_from(horizon, &mut later);
                    let data = batch.events.iter().filter(|e| e.kind == EVENT_DATA);
                    let (records, bytes) =
                        data.fold((0, 0), |(n, b), e| (n + 1, b + e.data.len() as u64));
                    self.records.fetch_add(records, Ordering::Relaxed);
                    self.record_bytes.fetch_add(bytes, Ordering::Relaxed);
                    handle(&batch);
                    batch.clear();
                    // What could still be overtaken comes first next round.
                    std::mem::swap(&mut *batch, &mut later);
                }
            }
            if !keep_going(self) {
                return Ok(());
            }
            ring.poll(every).context("cannot wait on the ring buffer")?;
        }
    }

    /// Hands over the batches that hold records taken before `stale_ns`;
    /// returns the time before which every record taken is out of the
    /// batches: `now_ns`, or the first record of a batch still holding one.
    fn settle_batches(&self, now_ns: u64, stale_ns: u64) -> u64 {
        let mut horizon = now_ns;
        for cpu in 0..self.batch_states.len {
            let Some(first_ns) = self.batch_states.first_record(cpu) else {
                continue;
            };
            let waiting = first_ns >= stale_ns || self.flush_batch(cpu) == Flush::Busy;
            if waiting {
                horizon = horizon.min(first_ns);
            }
        }
        horizon
    }

    /// Runs `flush_batch` on `cpu`.
    fn flush_batch(&self, cpu: usize) -> Flush {
        for _ in 0..FLUSH_TRIES {
            let run = self
                .skel
                .progs
                .flush_batch
                .test_run(libbpf_rs::ProgramInput {
                    cpu: cpu as u32,
                    flags: TEST_RUN_ON_CPU,
                    ..Default::default()
                });
            match run {
                Ok(output) if output.return_value == 0 => return Flush::Done,
                // A record is being added there: it takes nanoseconds.
                Ok(_) => std::hint::spin_loop(),
                // The CPU went offline: what its batch holds is lost, and
                // must not hold the others back.
                Err(_) => return Flush::Impossible,
            }
        }
        Flush::Busy
    }
}

/// `CLOCK_MONOTONIC` now, the clock of the kernel's timestamps.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Adds the records of the ring buffer record `data` (a CPU's batch, or
/// one record of its own) to `batch`.
fn read_records(mut data: &[u8], batch: &mut Batch) {
    let size = std::mem::size_of::<event_header>();
    while data.len() >= size {
        // SAFETY: each record starts with an event_header written by the
        // kernel side; read_unaligned copes with any alignment.
        let header: event_header = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
        let captured = (header.captured as usize).min(data.len() - size);
        let event = Event {
            timestamp_ns: header.timestamp_ns,
            cookie: header.socket_cookie,
            kind: header.kind,
            direction: header.direction,
            length: header.length,
            offset: header.offset,
            last: header.flags & RECORD_LAST != 0,
            ends: Ends {
                local_addr: header.ends.local_addr,
                remote_addr: header.ends.remote_addr,
                local_port: header.ends.local_port,
                remote_port: header.ends.remote_port,
            },
            comm: Comm(header.comm.map(|c| c as u8)),
            data: 0..0,
        };
        batch.push(event, &data[size..size + captured]);
        let record = (size + captured).next_multiple_of(RECORD_ALIGN);
        data = data.get(record..).unwrap_or_default();
    }
}

fn address(raw: &[u8; 16], port: u16) -> std::net::SocketAddr {
    let v6 = std::net::Ipv6Addr::from(*raw);
    let ip = match v6.to_ipv4_mapped() {
        Some(v4) => std::net::IpAddr::V4(v4),
        None => std::net::IpAddr::V6(v6),
    };
    std::net::SocketAddr::new(ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the kernel side writes it: its header and bytes, padded.
    fn record(at: u64, cookie: u64, data: &[u8]) -> Vec<u8> {
        let header = event_header {
            timestamp_ns: at,
            socket_cookie: cookie,
            kind: EVENT_DATA,
            direction: DIR_SEND,
            length: data.len() as u32,
            captured: data.len() as u32,
            flags: RECORD_LAST,
            ..Default::default()
        };
        // SAFETY: event_header is a plain-old-data #[repr(C)] struct.
        let mut bytes = unsafe {
            std::slice::from_raw_parts(
                (&header as *const event_header).cast::<u8>(),
                std::mem::size_of::<event_header>(),
            )
        }
        .to_vec();
        bytes.extend_from_slice(data);
        bytes.resize(bytes.len().next_multiple_of(RECORD_ALIGN), 0);
        bytes
    }

    #[test]
    fn a_batch_is_read_record_by_record() {
        let mut ring_record = record(10, 1, b"+OK\r\n");
        ring_record.extend(record(11, 2, b":1\r\n"));
        let mut batch = Batch::default();
        read_records(&ring_record, &mut batch);
        let read: Vec<(u64, u64, &[u8])> = batch
            .events()
            .iter()
            .map(|e| (e.timestamp_ns, e.cookie, batch.data(e)))
            .collect();
        assert_eq!(read, [(10, 1, &b"+OK\r\n"[..]), (11, 2, &b":1\r\n"[..])]);
    }

    #[test]
    fn records_are_handed_on_in_the_order_taken_and_later_ones_kept() {
        // Two CPUs' batches: the second holds a record taken before the
        // first's last, and one taken after the round began.
        let mut batch = Batch::default();
        read_records(
            &[record(10, 1, b"a"), record(30, 1, b"c")].concat(),
            &mut batch,
        );
        read_records(
            &[record(20, 1, b"b"), record(50, 1, b"d")].concat(),
            &mut batch,
        );
        let mut later = Batch::default();
        batch.split_off_from(40, &mut later);
        let data = |batch: &Batch| -> Vec<Vec<u8>> {
            batch
                .events()
                .iter()
                .map(|e| batch.data(e).to_vec())
                .collect()
        };
        assert_eq!(data(&batch), [b"a", b"b", b"c"]);
        assert_eq!(data(&later), [b"d"]);
    }
}
