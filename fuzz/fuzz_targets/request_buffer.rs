//! Fuzzes the sans-IO request parser: the first byte picks a chunk size, the rest is fed to a
//! `RequestBuffer` in chunks of that size, requests taken out as a connection loop does.
//! Panics, over-reads and unbounded loops are what the fuzzer looks for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serverkit::http::RequestBuffer;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut buf = RequestBuffer::new();
    let mut offset = 0;
    loop {
        loop {
            match buf.next_request() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if offset == input.len() {
            return;
        }
        let spare = buf.spare();
        assert!(!spare.is_empty(), "no room while no complete request waits");
        let n = chunk.min(spare.len()).min(input.len() - offset);
        spare[..n].copy_from_slice(&input[offset..offset + n]);
        buf.filled(n);
        offset += n;
    }
});
