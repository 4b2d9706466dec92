//! One batch of requests on a connection, sans-IO: both engines write the batch (one request
//! without `--pipeline`), feed it the bytes they read, and it counts each answer as it arrives.
//!
//! The rules, in their one place:
//! - each answer is counted when it arrives; its latency runs from the batch's scheduled time
//!   (closed loop: its send);
//! - a whole answer with a status outside `--expect-status` is a `status` error, and the batch goes on
//!   (the framing is intact); the connection is closed after that batch;
//! - when the connection ends before the batch is answered, every unanswered request is an
//!   error of what ended it: `closed` after a `Connection: close` answer or an early close,
//!   `malformed` after an unreadable answer, `reset`, `timeout`, or `connect`;
//! - bytes after the batch's last answer are an error (`malformed`): none were asked for;
//! - a thread's first answer in the other protocol (raw bytes to an HTTP client, `HTTP/` to a
//!   raw one) stops the run: every request would fail the same way;
//! - every answer's status is tallied, and every byte read counted.

use std::time::Instant;

use super::{count_io_error, fail, ErrorClass, Shared, ThreadStats};
use crate::response::{Bad, Progress, ResponseReader};

/// Where a batch stands after bytes were fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Answers still expected.
    More,
    /// Every request is accounted for; `keep_alive`: the connection may carry the next batch.
    Done { keep_alive: bool },
}

pub(crate) struct Batch {
    reader: ResponseReader,
    /// Requests written.
    size: u64,
    /// Requests answered or failed.
    answered: u64,
    /// No answer of this batch had an error status.
    clean: bool,
    /// Latency origin: the scheduled time (open loop) or the send (closed loop).
    pub(crate) scheduled: Instant,
    /// When the batch was started (connect included without `-k`).
    pub(crate) started: Instant,
}

impl Batch {
    pub(crate) fn new(reader: ResponseReader, now: Instant) -> Self {
        Batch {
            reader,
            size: 0,
            answered: 0,
            clean: true,
            scheduled: now,
            started: now,
        }
    }

    /// A new batch of `size` requests.
    pub(crate) fn begin(&mut self, size: u64, scheduled: Instant, started: Instant) {
        self.reader.reset();
        self.size = size;
        self.answered = 0;
        self.clean = true;
        self.scheduled = scheduled;
        self.started = started;
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Requests of the batch neither answered nor failed yet.
    pub(crate) fn unanswered(&self) -> u64 {
        self.size - self.answered
    }

    /// Bytes read at `now`: counts every answer they complete.
    pub(crate) fn feed(
        &mut self,
        mut bytes: &[u8],
        stats: &mut ThreadStats,
        shared: &Shared,
        now: Instant,
    ) -> Step {
        stats.bytes_read += bytes.len() as u64;
        loop {
            let (progress, used) = self.reader.feed_one(bytes);
            bytes = &bytes[used..];
            let ok = match progress {
                Progress::More => return Step::More,
                Progress::Done { status, .. } => {
                    stats.statuses.count(status);
                    true
                }
                Progress::Failed(Bad::Status(status)) => {
                    stats.statuses.count(status);
                    false
                }
                Progress::Failed(Bad::WrongProtocol) if stats.ok == 0 => {
                    shared.wrong_protocol();
                    return self.fail_rest(stats, shared, ErrorClass::Malformed);
                }
                Progress::Failed(bad) => return self.fail_rest(stats, shared, bad.into()),
            };
            if self.answered + 1 == self.size && !bytes.is_empty() {
                return self.fail_rest(stats, shared, ErrorClass::Malformed);
            }
            self.answered += 1;
            if ok {
                stats.record_ok(self.scheduled, self.started, now);
                shared.finished_ok();
            } else {
                self.clean = false;
                fail(stats, shared, ErrorClass::Status, 1, self.scheduled);
            }
            let keep_alive = self.reader.keep_alive();
            self.reader.reset();
            if self.answered == self.size {
                return Step::Done {
                    keep_alive: keep_alive && self.clean,
                };
            }
            if !keep_alive {
                // The server closes mid-batch: what it will not answer are errors.
                return self.fail_rest(stats, shared, ErrorClass::Closed);
            }
            if bytes.is_empty() {
                return Step::More;
            }
        }
    }

    /// The server closed the connection (read returned 0) at `now`.
    pub(crate) fn eof(&mut self, stats: &mut ThreadStats, shared: &Shared, now: Instant) -> Step {
        match self.reader.eof() {
            Progress::Done { .. } => {
                // The raw protocol's answer ends with the close (no status to count).
                self.answered += 1;
                stats.record_ok(self.scheduled, self.started, now);
                shared.finished_ok();
                Step::Done { keep_alive: false }
            }
            Progress::Failed(Bad::WrongProtocol) if stats.ok == 0 => {
                shared.wrong_protocol();
                self.fail_rest(stats, shared, ErrorClass::Malformed)
            }
            Progress::Failed(bad) => self.fail_rest(stats, shared, bad.into()),
            Progress::More => self.fail_rest(stats, shared, ErrorClass::Closed),
        }
    }

    /// Every unanswered request fails with `class`; the batch is over.
    pub(crate) fn fail_rest(
        &mut self,
        stats: &mut ThreadStats,
        shared: &Shared,
        class: ErrorClass,
    ) -> Step {
        fail(stats, shared, class, self.unanswered(), self.scheduled);
        self.answered = self.size;
        Step::Done { keep_alive: false }
    }

    /// An I/O error ended the connection (`connected`: after its handshake).
    pub(crate) fn fail_io(
        &mut self,
        stats: &mut ThreadStats,
        shared: &Shared,
        connected: bool,
        e: &std::io::Error,
    ) {
        count_io_error(
            stats,
            shared,
            connected,
            e,
            self.scheduled,
            self.unanswered(),
        );
        self.answered = self.size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::spec;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nHelloWorld\n";
    const CLOSE: &[u8] =
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 11\r\n\r\nHelloWorld\n";
    const E500: &[u8] = b"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\nno\n";

    fn setup(size: u64) -> (Batch, ThreadStats, Shared) {
        let now = Instant::now();
        let mut batch = Batch::new(ResponseReader::new(false), now);
        batch.begin(size, now, now);
        (batch, ThreadStats::new(), Shared::new(&spec(1, 1), now))
    }

    /// A batch of `size` fed `parts` in one read: where it stands, and what was counted.
    fn feed(size: u64, parts: &[&[u8]]) -> (Step, ThreadStats) {
        let (mut batch, mut stats, shared) = setup(size);
        let step = batch.feed(&parts.concat(), &mut stats, &shared, Instant::now());
        assert!(step == Step::More || batch.unanswered() == 0);
        (step, stats)
    }

    #[test]
    fn answers_in_one_read_or_split_anywhere_are_each_counted() {
        let bytes = [OK, OK, OK].concat();
        for split in 0..bytes.len() {
            let (mut batch, mut stats, shared) = setup(3);
            let now = Instant::now();
            let first = batch.feed(&bytes[..split], &mut stats, &shared, now);
            let answered_first = stats.ok;
            assert_eq!(first, Step::More, "split at {split}");
            assert_eq!(
                answered_first,
                (split / OK.len()) as u64,
                "split at {split}"
            );
            let step = batch.feed(&bytes[split..], &mut stats, &shared, now);
            assert_eq!(step, Step::Done { keep_alive: true }, "split at {split}");
            assert_eq!((stats.ok, stats.errors.total()), (3, 0));
            assert_eq!(stats.latency.len(), 3);
            assert_eq!(
                shared.finished.load(std::sync::atomic::Ordering::Relaxed),
                3
            );
        }
    }

    #[test]
    fn a_close_mid_batch_fails_what_it_leaves_unanswered() {
        let (step, stats) = feed(8, &[OK, OK, CLOSE]);
        assert_eq!(step, Step::Done { keep_alive: false });
        assert_eq!(
            (stats.ok, stats.errors.closed, stats.errors.total()),
            (3, 5, 5)
        );
        // An early close: the half answer and the rest are `closed`.
        let (mut batch, mut stats, shared) = setup(4);
        let now = Instant::now();
        assert_eq!(
            batch.feed(&[OK, &OK[..20]].concat(), &mut stats, &shared, now),
            Step::More
        );
        assert_eq!(
            batch.eof(&mut stats, &shared, now),
            Step::Done { keep_alive: false }
        );
        assert_eq!((stats.ok, stats.errors.closed), (1, 3));
    }

    #[test]
    fn an_error_status_is_one_error_and_the_batch_goes_on_then_closes() {
        let (step, stats) = feed(3, &[OK, E500, OK]);
        assert_eq!(step, Step::Done { keep_alive: false });
        assert_eq!(
            (stats.ok, stats.errors.status, stats.errors.total()),
            (2, 1, 1)
        );
        assert_eq!(stats.latency_all.len(), 3);
    }

    #[test]
    fn garbage_or_extra_bytes_fail_the_rest_as_malformed() {
        let (step, stats) = feed(4, &[OK, b"SSH-2.0\r\n\r\n"]);
        assert_eq!(step, Step::Done { keep_alive: false });
        assert_eq!((stats.ok, stats.errors.malformed), (1, 3));
        // One answer too many: the last one asked for is not trusted.
        let (step, stats) = feed(2, &[OK, OK, OK]);
        assert_eq!(step, Step::Done { keep_alive: false });
        assert_eq!((stats.ok, stats.errors.malformed), (1, 1));
    }

    #[test]
    fn io_errors_fail_every_unanswered_request_of_one_connect_attempt() {
        let (mut batch, mut stats, shared) = setup(5);
        assert_eq!(
            batch.feed(OK, &mut stats, &shared, Instant::now()),
            Step::More
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        batch.fail_io(&mut stats, &shared, true, &reset);
        assert_eq!((stats.ok, stats.errors.reset), (1, 4));
        let (mut batch, mut stats, shared) = setup(5);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        batch.fail_io(&mut stats, &shared, false, &refused);
        assert_eq!(stats.errors.connect, 5);
        assert_eq!(
            shared
                .failed_connects_in_a_row
                .load(std::sync::atomic::Ordering::Relaxed),
            1,
            "one attempt, however many requests it carried"
        );
    }
}
