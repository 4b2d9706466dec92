//! Fuzzes the whole connection state machine with the framing rules in it (issue 28): the
//! first byte picks a read size, the rest is what the client sends, then it closes. Whatever
//! the bytes, what the connection writes must be a sequence of well-formed answers: each a
//! status line, fields, and its `Content-Length` of body (none for a HEAD); a `100 Continue` only to a
//! request that asked for one; nothing after an error answer (it closes); no more `200`s than
//! request lines sent. Run it with the dictionary of framing tokens beside it:
//!
//! ```sh
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run connection -- -dict=framing.dict -max_total_time=600
//! ```
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use serverkit::connection::{Action, Connection};
use serverkit::date::DateCache;
use serverkit::ServerConfig;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let date = DateCache::fixed(b"Sun, 06 Nov 1994 08:49:37 GMT");
    let now = Instant::now();
    let mut conn = Connection::new(ServerConfig::default(), now);
    let (mut offset, mut written) = (0, Vec::new());
    for _ in 0..(input.len() + 1) * 8 + 1000 {
        match conn.next(now, &date) {
            Action::Read { .. } => {
                let buf = conn.read_buf();
                let n = chunk.min(buf.len()).min(input.len() - offset);
                buf[..n].copy_from_slice(&input[offset..offset + n]);
                offset += n;
                conn.read(n, now);
            }
            Action::Write { .. } => {
                let n = conn.to_write().len();
                written.extend_from_slice(conn.to_write());
                conn.wrote(n, now);
            }
            Action::Work(_) => conn.worked(),
            Action::CloseWrite => {}
            Action::Close => return check(input, &written),
        }
    }
    panic!("no close after {} bytes of input", input.len());
});

/// The framing oracle over everything the connection wrote.
fn check(input: &[u8], mut out: &[u8]) {
    let first_refused = first_head_must_be_refused(input);
    let asked_continue = contains_ignoring_case(input, b"100-continue");
    let request_lines = input.windows(7).filter(|w| w == b" HTTP/1").count();
    let mut served = 0;
    while !out.is_empty() {
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an answer's head ends");
        let head = std::str::from_utf8(&out[..end]).expect("an ASCII head");
        let status: u16 = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {head:?}"));
        out = &out[end + 4..];
        if first_refused && served == 0 && status != 100 {
            assert_ne!(status, 200, "the first head must be refused");
        }
        if status == 100 {
            assert!(asked_continue, "a 100 nobody asked for");
            assert_eq!(head, "HTTP/1.1 100 Continue");
            continue;
        }
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .expect("a Content-Length")
            .parse()
            .expect("a numeric Content-Length");
        if status == 200 {
            // A HEAD's answer has the GET's Content-Length and no body.
            if out.starts_with(serverkit::http::HELLO_BODY) {
                out = &out[length..];
            }
            served += 1;
        } else {
            assert!(out.len() >= length, "a {status} cut short");
            out = &out[length..];
            assert!(status >= 400, "status {status}");
            assert!(out.is_empty(), "an answer after a {status}");
        }
    }
    assert!(served <= request_lines, "{served} answers to {request_lines} request lines");
}

/// True when the first head (through its empty line, CRLF line ends only) is one a strict
/// reading refuses, whatever else is wrong with it: a `Content-Length` with a byte other than
/// a digit, SP or HTAB in its value, two `Content-Length` lines, or a `CONNECT`. Its answer
/// is then never a 200, which is what a server that guessed the framing would send.
fn first_head_must_be_refused(input: &[u8]) -> bool {
    let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = &input[..end];
    // Only heads with CRLF line ends: a bare LF would end the head sooner than this reads it.
    if head.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r')) {
        return false;
    }
    let mut lines = head.split(|&b| b == b'\n');
    let connect = lines.next().is_some_and(|line| line.starts_with(b"CONNECT "));
    let lengths: Vec<&[u8]> = lines
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            line[..colon]
                .eq_ignore_ascii_case(b"content-length")
                .then(|| &line[colon + 1..])
        })
        .collect();
    let bad_value = |v: &&[u8]| v.iter().any(|&b| !(b.is_ascii_digit() || b == b' ' || b == b'\t'));
    connect || lengths.len() > 1 || lengths.iter().any(bad_value)
}

fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
