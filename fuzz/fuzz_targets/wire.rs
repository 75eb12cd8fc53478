#![no_main]
// The body is swarmfs::fuzzing::wire, shared with tests/fuzz_corpus.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| swarmfs::fuzzing::wire(data));
