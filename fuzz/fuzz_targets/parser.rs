//! The WHATWG parser: any bytes, any chunking, never panics, and chunking
//! never changes the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_conformance::parser::{Parser, parse};

fuzz_target!(|input: (Vec<u8>, Vec<u16>)| {
    let (stream, cuts) = input;
    let whole = parse(&stream);
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| *c as usize % (stream.len() + 1))
        .collect();
    points.sort_unstable();
    let mut parser = Parser::new();
    let mut chunked = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([stream.len()]) {
        parser.feed_into(&stream[start..point], &mut chunked);
        start = point;
    }
    assert_eq!(chunked, whole);
});
