//! Every fuzz target over its checked-in corpus (`fuzz/corpus/<target>/`: seeds, and every
//! input that once crashed it), then over random mutations of that corpus for a bounded time:
//! `WEFT_FUZZ_SECONDS` per target, 3 by default. Coverage-guided runs are `cargo fuzz`'s job
//! (see fuzz/README.md); this keeps every finding fixed on every test run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} holds no seeds", dir.display());
    inputs
}

/// xorshift64*: a fast, seeded source of mutations, so a failure prints the seed that
/// reproduces it.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One to eight byte-level edits of `input`, some splicing in a piece of `other`.
    fn mutate(&mut self, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.below(8) {
            let at = self.below(out.len() + 1);
            match self.below(6) {
                0 if !out.is_empty() => {
                    let i = at.min(out.len() - 1);
                    out[i] ^= 1 << self.below(8);
                }
                1 => out.insert(at, self.next() as u8),
                2 if at < out.len() => {
                    let end = (at + 1 + self.below(16)).min(out.len());
                    out.drain(at..end);
                }
                3 if !other.is_empty() => {
                    let from = self.below(other.len());
                    let end = (from + 1 + self.below(32)).min(other.len());
                    out.splice(at..at, other[from..end].iter().copied());
                }
                4 => {
                    let interesting = [0u8, 0x7f, 0x80, 0xff, b'"', b'{', b'}', b':', b'\n'];
                    out.insert(at, interesting[self.below(interesting.len())]);
                }
                _ if !out.is_empty() => {
                    let i = at.min(out.len() - 1);
                    out[i] = self.next() as u8;
                }
                _ => out.push(self.next() as u8),
            }
        }
        out
    }
}

// The counts of a run are its report, as libFuzzer prints its own.
#[allow(clippy::print_stderr)]
#[test]
fn every_target_survives_its_corpus_and_a_bounded_mutation_run() {
    let seconds: u64 = std::env::var("WEFT_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for (name, target) in weft_fuzz::TARGETS {
        let inputs = corpus(name);
        for (path, bytes) in &inputs {
            let outcome = std::panic::catch_unwind(|| target(bytes));
            assert!(outcome.is_ok(), "{name} fails on {}", path.display());
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        let mut mutator = Mutator(seed);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut runs = 0u64;
        while Instant::now() < deadline {
            let base = &inputs[mutator.below(inputs.len())].1;
            let other = &inputs[mutator.below(inputs.len())].1;
            let input = mutator.mutate(base, other);
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(
                outcome.is_ok(),
                "{name} fails on a mutation (seed {seed}, run {runs}): {input:?}; add it to \
                 fuzz/corpus/{name}/ once fixed"
            );
            runs += 1;
        }
        assert!(seconds == 0 || runs > 0, "{name} ran no mutation");
        eprintln!("{name}: {} corpus inputs, {runs} mutations", inputs.len());
    }
}
