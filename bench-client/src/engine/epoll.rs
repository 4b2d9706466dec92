//! The hand-written engine: one epoll loop per thread over its share of the connections.
//!
//! Each connection is a `Slot` that goes Connecting -> Sending -> Receiving and back (a new
//! connection per request without `-k`). Sockets are registered once, edge-triggered for both
//! directions, so a request costs no `epoll_ctl` beyond the one that adds a new connection:
//! on a kept-alive connection one `write`, one `epoll_wait` and one `read` per request.
//! With `--pipeline N` a slot writes N requests in one `write` (a batch) and reads their
//! answers as they come, also while the batch is still being written.
//! Open loop (`--rate`): each slot has a schedule; a slot whose next request is not yet due
//! waits in a heap, and one timerfd is armed for the earliest (nanosecond precision).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use socket2::{Domain, Socket, Type};

use super::batch::{Batch, Step};
use super::{ErrorClass, LoadSpec, Shared, ThreadStats};

const TIMER: u64 = u64::MAX;
/// How often in-flight requests are checked against the timeout.
const SWEEP: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Open loop: waiting for the next scheduled time.
    Waiting,
    Connecting,
    Sending,
    Receiving,
    /// No more requests for this slot.
    Done,
}

struct Slot {
    stream: Option<TcpStream>,
    phase: Phase,
    /// The requests in flight on this slot and their answers so far.
    batch: Batch,
    /// Bytes of the batch written.
    sent: usize,
    /// Open loop: when this slot's next request is due.
    next_due: Instant,
    /// The current stream finished its handshake.
    connected: bool,
}

/// Runs thread `thread`'s share of the load until the budget, the duration or a stop ends it.
///
/// # Errors
/// Only if epoll or the timerfd cannot be created; connection errors are counted, not returned.
pub fn run_thread(
    spec: &LoadSpec,
    shared: &Shared,
    thread: usize,
    start: Instant,
) -> io::Result<ThreadStats> {
    let mut engine = Engine::new(spec, shared, thread, start)?;
    engine.run();
    Ok(engine.stats)
}

struct Engine<'a> {
    spec: &'a LoadSpec,
    shared: &'a Shared,
    /// The request, once per pipelined request: a batch of k is its first k copies.
    requests: Vec<u8>,
    /// One request's length.
    request_len: usize,
    epoll: Epoll,
    timer: TimerFd,
    armed: Option<Instant>,
    slots: Vec<Slot>,
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    interval: Option<Duration>,
    scratch: Box<[u8; 16384]>,
    stats: ThreadStats,
    opened: u64,
    /// Slots with a batch started and not yet ended (answered, failed or timed out).
    in_flight: usize,
}

impl<'a> Engine<'a> {
    fn new(
        spec: &'a LoadSpec,
        shared: &'a Shared,
        thread: usize,
        start: Instant,
    ) -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        epoll.add(&timer, EpollEvent::new(EpollFlags::EPOLLIN, TIMER))?;
        let range = spec.slots_of_thread(thread);
        let interval = spec.interval();
        let slots = range
            .map(|global| Slot {
                stream: None,
                phase: Phase::Waiting,
                batch: Batch::new(spec.response_reader(), start),
                sent: 0,
                // Stagger the schedules so the connections do not fire in step.
                next_due: start
                    + interval.map_or(Duration::ZERO, |i| {
                        i.mul_f64(global as f64 / spec.concurrency as f64)
                    }),
                connected: false,
            })
            .collect();
        let request = spec.request_bytes();
        Ok(Engine {
            spec,
            shared,
            requests: request.repeat(spec.batch() as usize),
            request_len: request.len(),
            epoll,
            timer,
            armed: None,
            slots,
            due: BinaryHeap::new(),
            interval,
            scratch: Box::new([0; 16384]),
            stats: ThreadStats::for_thread(shared),
            opened: 0,
            in_flight: 0,
        })
    }

    fn run(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if self.interval.is_some() {
                let due = self.slots[i].next_due;
                self.due.push(Reverse((due, i)));
            } else {
                self.next_request(i, now);
            }
        }
        let mut events = vec![EpollEvent::empty(); 256];
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            let now = Instant::now();
            if self.shared.should_stop(now) || self.all_done() {
                break;
            }
            self.start_due(now);
            if now >= next_sweep {
                self.sweep_timeouts(now);
                next_sweep = now + SWEEP;
            }
            if self.arm_timer(now).is_err() {
                self.shared.stop_early("timerfd failed");
                break;
            }
            let mut wake = next_sweep;
            if let Some(end) = self.shared.stop_at {
                wake = wake.min(end);
            }
            let millis = wake.saturating_duration_since(now).as_millis().min(100) as u16;
            let ready = match self.wait(&mut events, millis) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    self.shared.stop_early("epoll_wait failed");
                    break;
                }
            };
            for event in &events[..ready] {
                match event.data() {
                    TIMER => {
                        let _ = self.timer.wait();
                        self.armed = None;
                    }
                    i => self.on_event(i as usize, event.events()),
                }
            }
        }
        self.stats.finish(Instant::now());
        // Whatever is still in flight is abandoned (duration over, or stopped), and in open
        // loop whatever the schedules still had due before the end was never sent: both are
        // counted, not lost.
        for slot in &mut self.slots {
            let in_flight = matches!(
                slot.phase,
                Phase::Connecting | Phase::Sending | Phase::Receiving
            );
            if in_flight {
                self.stats.abandoned += slot.batch.unanswered();
            }
            if let Some(interval) = self.interval {
                let next = match slot.phase {
                    Phase::Waiting => Some(slot.next_due),
                    Phase::Done => None,
                    _ => Some(slot.next_due + interval),
                };
                self.stats.not_sent +=
                    next.map_or(0, |n| self.spec.unsent_from(n, self.shared.stop_at));
            }
            slot.stream = None;
        }
    }

    /// Waits for events. With requests in flight it first polls without blocking for up to
    /// `spec.spin` (all the time with `busy_poll`): an answer due within microseconds is then
    /// picked up by a running thread, and the server does not pay to wake a sleeping one.
    fn wait(&mut self, events: &mut [EpollEvent], millis: u16) -> nix::Result<usize> {
        if self.spec.busy_poll {
            return self.epoll.wait(events, EpollTimeout::ZERO);
        }
        if self.in_flight > 0 && !self.spec.spin.is_zero() {
            let spin_until = Instant::now() + self.spec.spin;
            loop {
                let n = self.epoll.wait(events, EpollTimeout::ZERO)?;
                if n > 0 || Instant::now() >= spin_until {
                    if n > 0 {
                        return Ok(n);
                    }
                    break;
                }
            }
        }
        self.epoll.wait(events, EpollTimeout::from(millis))
    }

    fn all_done(&self) -> bool {
        self.due.is_empty() && self.slots.iter().all(|s| s.phase == Phase::Done)
    }

    /// Open loop: starts every slot whose scheduled time has come.
    fn start_due(&mut self, now: Instant) {
        while let Some(&Reverse((due, i))) = self.due.peek() {
            if due > now {
                break;
            }
            self.due.pop();
            self.start(i, due, now);
        }
    }

    fn arm_timer(&mut self, now: Instant) -> nix::Result<()> {
        let Some(&Reverse((due, _))) = self.due.peek() else {
            return Ok(());
        };
        if self.armed.is_some_and(|armed| armed <= due) {
            return Ok(());
        }
        let wait = due
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        self.timer.set(
            Expiration::OneShot(TimeSpec::from_duration(wait)),
            TimerSetTimeFlags::empty(),
        )?;
        self.armed = Some(due);
        Ok(())
    }

    /// The slot is free: closed loop starts its next request now; open loop schedules it.
    fn next_request(&mut self, i: usize, now: Instant) {
        match self.interval {
            None => self.start(i, now, now),
            Some(interval) => {
                let slot = &mut self.slots[i];
                slot.next_due += interval;
                if self.shared.stop_at.is_some_and(|end| slot.next_due >= end) {
                    slot.phase = Phase::Done;
                } else if slot.next_due <= now {
                    let due = slot.next_due;
                    self.start(i, due, now); // late: its latency counts from `due`
                } else {
                    slot.phase = Phase::Waiting;
                    self.due.push(Reverse((slot.next_due, i)));
                }
            }
        }
    }

    /// Starts a batch on slot `i` if the budget allows; a failed connect moves on to the next.
    fn start(&mut self, i: usize, scheduled: Instant, now: Instant) {
        loop {
            let size = self.shared.claim(now, self.spec.batch());
            if size == 0 {
                self.stats.not_sent += self.spec.unsent_from(scheduled, self.shared.stop_at);
                self.slots[i].phase = Phase::Done;
                self.slots[i].stream = None;
                return;
            }
            self.in_flight += 1;
            let slot = &mut self.slots[i];
            slot.batch.begin(size, scheduled, now);
            slot.sent = 0;
            if slot.stream.is_some() {
                slot.phase = Phase::Sending;
                return self.send(i);
            }
            match self.connect(i) {
                Ok(()) => return,
                Err(e) => {
                    self.in_flight -= 1;
                    let slot = &mut self.slots[i];
                    slot.batch.fail_io(&mut self.stats, self.shared, false, &e);
                    if self.interval.is_some() {
                        return self.next_request(i, now);
                    }
                }
            }
        }
    }

    fn connect(&mut self, i: usize) -> io::Result<()> {
        let addr = self.spec.target.addr;
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            None,
        )?;
        if let Some(source) = self.spec.source_addr(self.opened) {
            socket.bind(&source.into())?;
        }
        self.opened += 1;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let stream: TcpStream = socket.into();
        let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET;
        self.epoll
            .add(&stream, EpollEvent::new(interest, i as u64))?;
        self.stats.connections += 1;
        let slot = &mut self.slots[i];
        slot.stream = Some(stream);
        slot.connected = false;
        slot.phase = Phase::Connecting;
        Ok(())
    }

    fn on_event(&mut self, i: usize, flags: EpollFlags) {
        let broken = flags.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
        if self.slots[i].phase == Phase::Connecting {
            if broken {
                let e = self.slots[i]
                    .stream
                    .as_ref()
                    .and_then(|s| s.take_error().ok().flatten())
                    .unwrap_or_else(|| ErrorKind::ConnectionRefused.into());
                return self.fail(i, &e);
            }
            if !flags.contains(EpollFlags::EPOLLOUT) {
                return;
            }
            let slot = &mut self.slots[i];
            slot.connected = true;
            slot.phase = if self.spec.raw {
                Phase::Receiving
            } else {
                Phase::Sending
            };
        }
        if self.slots[i].phase == Phase::Sending && (flags.contains(EpollFlags::EPOLLOUT) || broken)
        {
            self.send(i);
        }
        // Answers are read while a batch is still being written too: a server answers the
        // first requests of a long batch before it has read the last ones, and the edge of
        // their arrival comes only once.
        if matches!(self.slots[i].phase, Phase::Sending | Phase::Receiving)
            && (flags.contains(EpollFlags::EPOLLIN) || broken)
        {
            self.recv(i);
        }
    }

    fn send(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(stream) = slot.stream.as_mut() else {
            return;
        };
        let len = slot.batch.size() as usize * self.request_len;
        while slot.sent < len {
            match stream.write(&self.requests[slot.sent..len]) {
                Ok(n) => slot.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return, // the OUT edge resumes it
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, &e),
            }
        }
        slot.phase = Phase::Receiving;
    }

    fn recv(&mut self, i: usize) {
        loop {
            let slot = &mut self.slots[i];
            let Some(stream) = slot.stream.as_mut() else {
                return;
            };
            let read = stream.read(&mut self.scratch[..]);
            let now = Instant::now();
            let step = match read {
                Ok(0) => slot.batch.eof(&mut self.stats, self.shared, now),
                Ok(n) => slot
                    .batch
                    .feed(&self.scratch[..n], &mut self.stats, self.shared, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(i, &e),
            };
            if let Step::Done { keep_alive } = step {
                return self.recycle(i, self.spec.keep_alive && keep_alive);
            }
        }
    }

    /// Ends the current batch: keeps or closes the connection, then the next batch.
    fn recycle(&mut self, i: usize, keep: bool) {
        self.in_flight -= 1;
        if !keep {
            self.slots[i].stream = None; // close; also leaves the epoll set
        }
        self.next_request(i, Instant::now());
    }

    fn fail(&mut self, i: usize, e: &io::Error) {
        let slot = &mut self.slots[i];
        slot.batch
            .fail_io(&mut self.stats, self.shared, slot.connected, e);
        self.recycle(i, false);
    }

    /// A batch not answered within the timeout of its start fails, every unanswered request
    /// of it a timeout.
    fn sweep_timeouts(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            let in_flight = matches!(
                slot.phase,
                Phase::Connecting | Phase::Sending | Phase::Receiving
            );
            if in_flight && now.saturating_duration_since(slot.batch.started) >= self.spec.timeout {
                slot.batch
                    .fail_rest(&mut self.stats, self.shared, ErrorClass::Timeout);
                self.recycle(i, false);
            }
        }
    }
}
