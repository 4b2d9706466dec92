//! Property tests of the sans-IO request parser and connection state machine (bounded: part of
//! `make test`). The parser's entry point is also a cargo-fuzz target for longer runs (fuzz/,
//! docs/hostile-clients.md).

use std::time::Instant;

use proptest::prelude::*;
use serverkit::buffers::BufferPool;
use serverkit::connection::{Action, Connection};
use serverkit::date::DateCache;
use serverkit::http::{HttpError, Request, RequestBuffer, MAX_HEAD, OUTBOX_SIZE};
use serverkit::ServerConfig;

/// Runs a whole connection over `input`: reads of the sizes in `reads`, writes of at most the
/// sizes in `writes`, work paid at once, the peer closing after its input; all at one instant.
/// Returns every byte the connection wrote, after checking it never offered more than its
/// fixed buffers. With a `pool`, the connection is a pooled one, driven as the event loops
/// drive theirs: it must then hold a set exactly while bytes are in it.
fn converse(
    input: &[u8],
    reads: &[usize],
    writes: &[usize],
    mut pool: Option<&mut BufferPool>,
) -> Vec<u8> {
    let date = DateCache::fixed(b"Sun, 06 Nov 1994 08:49:37 GMT");
    let now = Instant::now();
    let mut conn = match pool {
        Some(_) => Connection::pooled(ServerConfig::default(), now),
        None => Connection::new(ServerConfig::default(), now),
    };
    let (mut reads, mut writes) = (reads.iter().cycle(), writes.iter().cycle());
    let (mut offset, mut written) = (0, Vec::new());
    for _ in 0..(input.len() + 1) * 8 + 1000 {
        let action = match pool.as_deref_mut() {
            Some(pool) => {
                let action = conn.next_lent(now, &date, pool);
                if conn.is_idle() {
                    assert!(!conn.holds_buffers(), "an idle connection kept its set");
                }
                if let Action::Read { .. } = action {
                    conn.lend(pool);
                }
                action
            }
            None => conn.next(now, &date),
        };
        match action {
            Action::Read { .. } => {
                let buf = conn.read_buf();
                assert!(buf.len() <= MAX_HEAD);
                let n = (*reads.next().unwrap())
                    .min(buf.len())
                    .min(input.len() - offset);
                buf[..n].copy_from_slice(&input[offset..offset + n]);
                offset += n;
                conn.read(n, now);
            }
            Action::Write { .. } => {
                let pending = conn.to_write();
                assert!(!pending.is_empty() && pending.len() <= OUTBOX_SIZE);
                let n = pending.len().min(*writes.next().unwrap());
                written.extend_from_slice(&pending[..n]);
                conn.wrote(n, now);
            }
            Action::Work(_) => conn.worked(),
            Action::CloseWrite => {}
            Action::Close => return written,
        }
    }
    panic!("no close after {} bytes of input", input.len());
}

/// Feeds `input` in chunks of the given sizes, taking requests out as they complete, as a
/// connection loop does. Returns the requests and the error that ended the stream, if any.
fn drive(input: &[u8], chunks: &[usize]) -> (Vec<Request>, Option<HttpError>) {
    let mut buf = RequestBuffer::new();
    let mut requests = Vec::new();
    let mut offset = 0;
    let mut sizes = chunks.iter().copied().cycle();
    loop {
        loop {
            match buf.next_request() {
                Ok(Some(r)) => requests.push(r),
                Ok(None) => break,
                Err(e) => return (requests, Some(e)),
            }
            assert!(requests.len() <= input.len(), "more requests than bytes");
        }
        if offset == input.len() {
            return (requests, None);
        }
        let spare = buf.spare();
        assert!(!spare.is_empty(), "no room while no complete request waits");
        assert!(spare.len() <= MAX_HEAD);
        let n = sizes
            .next()
            .unwrap_or(1)
            .clamp(1, spare.len())
            .min(input.len() - offset);
        spare[..n].copy_from_slice(&input[offset..offset + n]);
        buf.filled(n);
        offset += n;
    }
}

fn request_strategy() -> impl Strategy<Value = (Vec<u8>, Request)> {
    (
        prop::sample::select(vec!["GET", "POST", "HEAD"]),
        "/[a-z0-9/._-]{0,40}",
        prop::bool::ANY,
        prop::sample::select(vec![
            None,
            Some("close"),
            Some("keep-alive"),
            Some("Upgrade, Close"),
        ]),
        prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,30}"), 0..6),
        0usize..300,
    )
        .prop_map(|(method, path, http10, connection, headers, body)| {
            let mut text = format!(
                "{method} {path} HTTP/1.{}\r\nHost: t\r\n",
                if http10 { 0 } else { 1 }
            );
            for (name, value) in &headers {
                let lower = name.to_ascii_lowercase();
                let interpreted = [
                    "connection",
                    "content-length",
                    "transfer-encoding",
                    "host",
                    "expect",
                ];
                if interpreted.contains(&lower.as_str()) {
                    continue;
                }
                text.push_str(&format!("{name}: {}\r\n", value.trim()));
            }
            if let Some(c) = connection {
                text.push_str(&format!("Connection: {c}\r\n"));
            }
            let body_len = if method == "POST" { body } else { 0 };
            if body_len > 0 {
                text.push_str(&format!("Content-Length: {body_len}\r\n"));
            }
            text.push_str("\r\n");
            let mut bytes = text.into_bytes();
            bytes.extend(std::iter::repeat_n(b'x', body_len));
            let close = connection.is_some_and(|c| c.to_ascii_lowercase().contains("close"));
            let keep_alive = if http10 {
                connection == Some("keep-alive")
            } else {
                !close
            };
            (
                bytes,
                Request {
                    keep_alive,
                    http10,
                    head_only: method == "HEAD",
                },
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any bytes, in any chunking: no panic, no read past what was filled, no unbounded state.
    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..20_000),
                                   chunks in prop::collection::vec(1usize..9000, 1..8)) {
        let (requests, _) = drive(&input, &chunks);
        prop_assert!(requests.len() <= input.len() / 16 + 1);
    }

    /// Valid pipelined requests parse to the same answers however the bytes are split.
    #[test]
    fn valid_pipelines_parse_the_same_in_any_chunking(
        batch in prop::collection::vec(request_strategy(), 1..8),
        chunks in prop::collection::vec(1usize..200, 1..6),
    ) {
        let input: Vec<u8> = batch.iter().flat_map(|(bytes, _)| bytes.clone()).collect();
        let expected: Vec<Request> = batch.iter().map(|(_, r)| *r).collect();
        let (whole, error) = drive(&input, &[input.len()]);
        prop_assert_eq!(error, None);
        prop_assert_eq!(&whole, &expected);
        let (split, error) = drive(&input, &chunks);
        prop_assert_eq!(error, None);
        prop_assert_eq!(split, expected);
    }

    /// A connection answers a pipeline with the same bytes however its input is split and
    /// however little each write takes.
    #[test]
    fn connections_answer_the_same_in_any_chunking(
        batch in prop::collection::vec(request_strategy(), 1..12),
        reads in prop::collection::vec(1usize..300, 1..6),
        writes in prop::collection::vec(1usize..500, 1..6),
    ) {
        let input: Vec<u8> = batch.iter().flat_map(|(bytes, _)| bytes.clone()).collect();
        let whole = converse(&input, &[usize::MAX], &[usize::MAX], None);
        let answers = String::from_utf8_lossy(&whole).matches("HTTP/1.1 200 OK").count();
        let until_close = batch.iter().position(|(_, r)| !r.keep_alive).map_or(batch.len(), |i| i + 1);
        prop_assert_eq!(answers, until_close);
        prop_assert_eq!(converse(&input, &reads, &writes, None), whole.clone());
        // Pooled, as the event loops run it: the same bytes, and one set serves it all.
        let mut pool = BufferPool::new();
        prop_assert_eq!(converse(&input, &reads, &writes, Some(&mut pool)), whole);
        prop_assert_eq!(pool.made(), 1);
    }

    /// Any bytes, in any chunking, through a whole connection: it ends, within its buffers.
    #[test]
    fn connections_survive_arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..20_000),
                                           reads in prop::collection::vec(1usize..9000, 1..8)) {
        converse(&input, &reads, &[700], None);
        converse(&input, &reads, &[700], Some(&mut BufferPool::new()));
    }

    /// A `Content-Length` value is a length only when it is ASCII digits between SP and HTAB:
    /// any other byte (a Unicode space, a sign, a comma, a letter, a control) is a 400, however
    /// the bytes are split. A proxy in front reads the same bytes the same way.
    #[test]
    fn content_length_is_a_length_only_when_it_is_digits(
        value in prop::collection::vec(prop::sample::select(
            vec![b' ', b'\t', b'0', b'5', b'9', b'+', b'-', b',', b'x', 0x0b, 0x0c, 0xa0, 0x85, 0xc2, 0xe3, 0x80],
        ), 0..8),
        chunks in prop::collection::vec(1usize..40, 1..4),
    ) {
        let mut input = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: ".to_vec();
        input.extend_from_slice(&value);
        input.extend_from_slice(b"\r\n\r\n");
        let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
        let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
        let end = value.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
        let trimmed = &value[start..end];
        let digits = !trimmed.is_empty() && trimmed.iter().all(u8::is_ascii_digit);
        let length: u64 = if digits { std::str::from_utf8(trimmed).unwrap().parse().unwrap() } else { 0 };
        // Long lengths would only feed long bodies in small chunks: they teach nothing more.
        prop_assume!(length <= 20_000);
        // The body itself, then a follow-up request: both must come out when the value is valid.
        if digits {
            input.extend(std::iter::repeat_n(b'x', length as usize));
        }
        input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let (requests, error) = drive(&input, &chunks);
        if digits {
            prop_assert_eq!(error, None);
            prop_assert_eq!(requests.len(), 2);
        } else {
            prop_assert_eq!(error, Some(HttpError::Malformed));
            prop_assert!(requests.is_empty());
        }
    }

    /// A head that never ends is refused with 431 once it reaches 8 KiB, whatever the chunks.
    #[test]
    fn endless_heads_are_431(filler in prop::collection::vec(b'a'..=b'z', MAX_HEAD..MAX_HEAD + 4000),
                             chunks in prop::collection::vec(1usize..3000, 1..5)) {
        let mut input = b"GET / HTTP/1.1\r\nX: ".to_vec();
        input.extend_from_slice(&filler);
        let (requests, error) = drive(&input, &chunks);
        prop_assert!(requests.is_empty());
        prop_assert_eq!(error, Some(HttpError::HeadTooLarge));
    }
}
