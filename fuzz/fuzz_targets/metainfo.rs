#![no_main]
// The body is swarmfs::fuzzing::metainfo, shared with tests/fuzz_corpus.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| swarmfs::fuzzing::metainfo(data));
