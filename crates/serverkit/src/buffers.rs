//! A connection's two buffers ([`Buffers`]: the 8 KiB request buffer and the 2 KiB outbox),
//! and the bounded free list an event loop lends them from ([`BufferPool`]).
//!
//! A blocking model gives each connection its own set for its whole life
//! ([`Connection::new`](crate::connection::Connection::new)): its thread or process is there
//! anyway. An event loop holds thousands of connections, most of them idle between requests
//! (C10K), and a set held by each would be 10 KiB per idle client. So the event loops make
//! their connections without a set
//! ([`Connection::pooled`](crate::connection::Connection::pooled)) and lend one from the
//! loop's pool when bytes arrive or an answer is due; the set goes back as soon as it holds
//! nothing (no byte of a request, nothing unsent). nginx does the same with its
//! `client_header_buffer` (allocated when a read finds data, freed when the connection goes
//! idle).
//!
//! A set goes back to the pool, not to the allocator: on a kept-alive connection a request
//! takes the set on top of the free list and puts it back (two vector operations, no
//! allocation, no clearing of 10 KiB). The pool is bounded ([`BufferPool::CAP`]): sets given
//! back to a full pool are freed, so a burst of slow clients (each holding a set while its
//! request or answer is incomplete) does not stay as memory after it.

use crate::http::{Outbox, Reading, RequestBuffer};

/// The request buffer and the outbox of one connection: what it reads into and writes from.
pub struct Buffers {
    pub(crate) requests: RequestBuffer,
    pub(crate) out: Outbox,
}

impl Buffers {
    /// A new, empty set, on the heap (10 KiB).
    pub fn new() -> Box<Buffers> {
        Box::new(Buffers {
            requests: RequestBuffer::new(),
            out: Outbox::new(),
        })
    }

    /// True when they hold nothing the connection still needs: no byte of a request (nor a
    /// body being skipped), nothing to write. Such a set can go back to a pool.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty() && self.requests.reading() == Reading::Idle
    }

    /// Forgets what they hold.
    pub(crate) fn clear(&mut self) {
        self.requests.clear();
        self.out.clear();
    }
}

/// A bounded free list of [`Buffers`], owned by one event loop (one thread).
pub struct BufferPool {
    free: Vec<Box<Buffers>>,
    cap: usize,
    made: usize,
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new()
    }
}

impl BufferPool {
    /// Most sets a pool keeps (640 KiB). On the fast path a connection takes a set and gives
    /// it back within one turn of its loop, so one or two are in use at once; more are held
    /// only by connections that wait mid-request or mid-answer (slow clients), and those past
    /// the cap are freed when given back.
    pub const CAP: usize = 64;

    /// An empty pool keeping at most [`CAP`](Self::CAP) sets.
    pub fn new() -> BufferPool {
        Self::with_cap(Self::CAP)
    }

    /// An empty pool keeping at most `cap` sets.
    pub fn with_cap(cap: usize) -> BufferPool {
        BufferPool {
            free: Vec::new(),
            cap,
            made: 0,
        }
    }

    /// A set: the last one given back, or a new one when none is free.
    pub fn take(&mut self) -> Box<Buffers> {
        self.free.pop().unwrap_or_else(|| {
            self.made += 1;
            Buffers::new()
        })
    }

    /// Takes `buffers` back, emptied; frees them instead when the pool is full.
    pub fn give(&mut self, mut buffers: Box<Buffers>) {
        if self.free.len() < self.cap {
            buffers.clear();
            self.free.push(buffers);
        }
    }

    /// Sets waiting in the pool.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Sets this pool has allocated so far (a steady load stops adding to it).
    pub fn made(&self) -> usize {
        self.made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_given_back_is_the_next_taken_and_nothing_new_is_made() {
        let mut pool = BufferPool::new();
        let first = pool.take();
        let address = &*first as *const Buffers;
        pool.give(first);
        for _ in 0..1000 {
            let set = pool.take();
            assert_eq!(&*set as *const Buffers, address);
            pool.give(set);
        }
        assert_eq!((pool.made(), pool.free()), (1, 1));
    }

    #[test]
    fn the_pool_keeps_no_more_than_its_cap() {
        let mut pool = BufferPool::with_cap(3);
        let sets: Vec<_> = (0..10).map(|_| pool.take()).collect();
        assert_eq!(pool.made(), 10);
        for set in sets {
            pool.give(set);
        }
        assert_eq!(pool.free(), 3, "the other seven were freed");
    }

    #[test]
    fn a_set_comes_back_empty_whatever_it_held() {
        let mut pool = BufferPool::with_cap(1);
        let mut set = pool.take();
        assert!(set.is_empty());
        set.requests.spare()[..3].copy_from_slice(b"GET");
        set.requests.filled(3);
        assert!(set.out.push(b"HTTP/1.1 200 OK\r\n"));
        assert!(!set.is_empty());
        pool.give(set);
        assert!(pool.take().is_empty());
    }
}
