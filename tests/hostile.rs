//! Hostile input for `instrument`: every case must end in a clear error (with
//! the byte offset when the error is about a position), never a panic or a
//! hang, and the command line must exit with status 1 without creating or
//! changing the output file.
//!
//! The corpus is generated here from the real modules in `corpus/wat/`:
//! truncations at every section boundary and at every byte of the first few
//! hundred bytes, seeded byte corruptions, LEB128 overflows, absurd local
//! counts, 100k-deep nesting, functions of megabytes, unknown sections,
//! sections longer than the file, the features the pass refuses, modules
//! already instrumented (by us and by `wasm-opt --asyncify`), empty and
//! non-wasm files. The small, meaningful cases are also kept as files in
//! `corpus/hostile/` (see its README), which are walked too.
//!
//! Which mutated inputs are invalid is decided by wasmparser's validator with
//! the pass's feature set: a mutation that happens to stay valid (a flipped
//! constant) must then instrument to a valid module or be refused with a
//! message, never panic.

mod process;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, FunctionSection, ImportSection,
    MemorySection, MemoryType, Module, RawSection, TypeSection,
};
use wasm_rewind_transform::{instrument, ErrorKind, Options};

/// How long one command-line run may take before it counts as a hang (the
/// binary is a debug build; the giant function is the slowest case).
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// One hostile input.
struct Case {
    /// The family it belongs to, for the counts.
    kind: &'static str,
    /// What it is, for messages.
    name: String,
    bytes: Vec<u8>,
    /// What the pass must answer.
    expect: Expect,
}

/// The answer a case requires.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// An invalid module: `InvalidInput` with an offset inside the input.
    InvalidAt,
    /// Refused for this reason (the offset is optional).
    Refused(ErrorKind),
    /// Decided by wasmparser's validator: invalid gives `InvalidAt`, valid
    /// gives a valid output or a refusal with a message.
    ByValidator,
    /// A valid module that must instrument to a valid one (within time).
    Valid,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary forms of `corpus/wat/*.wat`, sorted by name.
fn corpus_modules() -> Vec<(String, Vec<u8>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(repo().join("corpus/wat"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wat"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "corpus/wat has too few modules");
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, wat::parse_file(&p).unwrap())
        })
        .collect()
}

/// A deterministic generator (xorshift64*), so a failing case can be replayed
/// by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Byte offsets where the sections of `wasm` start and end.
fn section_boundaries(wasm: &[u8]) -> Vec<usize> {
    let mut out = vec![8];
    let mut reader = wasmparser::BinaryReader::new(&wasm[8..], 8);
    while !reader.eof() {
        let start = reader.original_position();
        reader.read_u8().unwrap();
        let size = reader.read_var_u32().unwrap() as usize;
        let body = reader.original_position();
        reader.read_bytes(size).unwrap();
        out.extend([start, start + 1, body, body + size / 2]);
    }
    out.push(wasm.len());
    out
}

/// `() -> ()` type 0, import `env.sleep`, one function (index 1, exported as
/// `run`) whose body (locals and code, `end` included) is `body`, memory 1.
fn module_with_body(body: &[u8]) -> Vec<u8> {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    m.section(&types);
    let mut imports = ImportSection::new();
    imports.import("env", "sleep", EntityType::Function(0));
    m.section(&imports);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    m.section(&funcs);
    let mut mems = MemorySection::new();
    mems.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    m.section(&mems);
    let mut exports = ExportSection::new();
    exports.export("run", ExportKind::Func, 1);
    m.section(&exports);
    let mut code = CodeSection::new();
    code.raw(body);
    m.section(&code);
    m.finish()
}

/// A body declaring `groups` of `(count, i32)` locals, then `call $sleep`.
fn locals_body(groups: &[u32]) -> Vec<u8> {
    let mut body = Vec::new();
    leb(&mut body, groups.len() as u64);
    for &n in groups {
        leb(&mut body, n as u64);
        body.push(0x7f);
    }
    body.extend([0x10, 0x00, 0x0b]);
    body
}

fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `depth` nested `block`s around a `call $sleep`.
fn nested_body(depth: usize, opener: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00];
    for _ in 0..depth {
        body.extend(opener);
    }
    body.extend([0x10, 0x00]);
    body.extend(std::iter::repeat_n(0x0b, depth + 1));
    body
}

/// A body of about `bytes` bytes: `i32.const 1; drop` repeated, with a
/// `call $sleep` every `call_every` repetitions (never when 0).
fn giant_body(bytes: usize, call_every: usize) -> Vec<u8> {
    let mut body = vec![0x00];
    let mut i = 0;
    while body.len() < bytes {
        body.extend([0x41, 0x01, 0x1a]);
        i += 1;
        if call_every != 0 && i % call_every == 0 {
            body.extend([0x10, 0x00]);
        }
    }
    body.extend([0x10, 0x00, 0x0b]);
    body
}

/// `wasm` with a raw section `id` of `contents` appended.
fn with_section(wasm: &[u8], id: u8, contents: &[u8]) -> Vec<u8> {
    let mut m = wasm.to_vec();
    m.push(id);
    leb(&mut m, contents.len() as u64);
    m.extend(contents);
    m
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap_or_else(|e| panic!("test module: {e}"))
}

/// `wasm-opt --asyncify` on `wasm`.
fn binaryen_asyncify(wasm: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.wasm"), dir.path().join("out.wasm"));
    std::fs::write(&input, wasm).unwrap();
    let wasm_opt = process::wasm_opt();
    let status = Command::new(&wasm_opt)
        .arg(&input)
        .args(["--asyncify", "-o"])
        .arg(&output)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "`{}` must be installed (Debian: apt-get install binaryen): {e}",
                wasm_opt.display()
            )
        });
    assert!(status.success(), "wasm-opt --asyncify failed");
    std::fs::read(&output).unwrap()
}

/// The generated corpus.
fn corpus() -> Vec<Case> {
    let modules = corpus_modules();
    let mut cases = Vec::new();
    let mut add = |kind, name: String, bytes, expect| {
        cases.push(Case {
            kind,
            name,
            bytes,
            expect,
        })
    };

    // Truncations: at and around every section boundary of every module, and
    // at every byte of the first 300 bytes of the three largest.
    for (name, wasm) in &modules {
        let mut cuts = section_boundaries(wasm);
        cuts.sort();
        cuts.dedup();
        for cut in cuts.into_iter().filter(|&c| c < wasm.len()) {
            add(
                "truncated at a section boundary",
                format!("{name} cut at {cut}"),
                wasm[..cut].to_vec(),
                Expect::ByValidator,
            );
        }
    }
    let mut by_size: Vec<&(String, Vec<u8>)> = modules.iter().collect();
    by_size.sort_by_key(|(_, w)| std::cmp::Reverse(w.len()));
    for (name, wasm) in by_size.iter().take(3) {
        for cut in 0..wasm.len().min(300) {
            add(
                "truncated at every byte",
                format!("{name} cut at {cut}"),
                wasm[..cut].to_vec(),
                Expect::ByValidator,
            );
        }
    }

    // Corruptions: 60 per module (HOSTILE_ROUNDS=N for a longer run), each
    // 1-4 random bytes replaced.
    let rounds: usize = std::env::var("HOSTILE_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60);
    let mut rng = Rng(0x5eed_cafe_f00d_beef);
    for (name, wasm) in &modules {
        for round in 0..rounds {
            let mut bytes = wasm.clone();
            let n = 1 + rng.below(4);
            for _ in 0..n {
                // Keep the header most of the time, so the damage reaches the
                // sections.
                let at = 8 + rng.below(bytes.len() - 8);
                bytes[at] = rng.next() as u8;
            }
            add(
                "corrupted bytes",
                format!("{name} corruption #{round}"),
                bytes,
                Expect::ByValidator,
            );
        }
    }

    // LEB128 overflow: a section size, a vector count and a type index with
    // too many bytes or bits.
    let header = b"\0asm\x01\0\0\0".to_vec();
    for (what, tail) in [
        (
            "section size of 6 bytes",
            &[0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00][..],
        ),
        (
            "section size with bits past 32",
            &[0x01, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ),
        (
            "type count of 6 bytes",
            &[0x01, 0x06, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00],
        ),
        (
            "i32.const of 6 bytes",
            &[
                0x0a, 0x0a, 0x01, 0x08, 0x00, 0x41, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
            ],
        ),
    ] {
        let mut bytes = header.clone();
        bytes.extend(tail);
        add(
            "LEB128 overflow",
            what.to_string(),
            bytes,
            Expect::InvalidAt,
        );
    }
    add(
        "LEB128 overflow",
        "local count of 6 bytes".into(),
        module_with_body(&[0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x7f, 0x0b]),
        Expect::InvalidAt,
    );

    // Huge local counts.
    for (what, groups) in [
        ("2^32-1 locals", vec![u32::MAX]),
        ("50,000,000 locals", vec![50_000_000]),
        ("two groups of 2^31 locals", vec![1 << 31, 1 << 31]),
        ("50,001 locals in 50,001 groups", vec![1; 50_001]),
    ] {
        add(
            "huge local counts",
            what.into(),
            module_with_body(&locals_body(&groups)),
            Expect::InvalidAt,
        );
    }
    add(
        "huge local counts",
        "50,000 locals (the limit), so no room for the pass's own".into(),
        module_with_body(&locals_body(&[50_000])),
        Expect::Refused(ErrorKind::Unsupported),
    );

    // Deep nesting: valid, so it must instrument (without overflowing the
    // stack); an unclosed nest is invalid.
    for (what, opener) in [
        ("100k nested blocks", &[0x02, 0x40][..]),
        ("100k nested loops", &[0x03, 0x40]),
        ("100k nested ifs", &[0x41, 0x01, 0x04, 0x40]),
    ] {
        add(
            "deep nesting",
            what.into(),
            module_with_body(&nested_body(100_000, opener)),
            Expect::Valid,
        );
    }
    let mut unclosed = nested_body(100_000, &[0x02, 0x40]);
    unclosed.truncate(unclosed.len() - 2);
    add(
        "deep nesting",
        "100k nested blocks, two `end`s missing".into(),
        module_with_body(&unclosed),
        Expect::InvalidAt,
    );

    // Giant functions: just under wasmparser's 7,654,321-byte limit, and over.
    add(
        "giant functions",
        "7 MB function, one call".into(),
        module_with_body(&giant_body(7_000_000, 0)),
        Expect::Valid,
    );
    add(
        "giant functions",
        "2 MB function, a call every 64 instructions".into(),
        module_with_body(&giant_body(2_000_000, 64)),
        Expect::Valid,
    );
    add(
        "giant functions",
        "8 MB function (over the limit)".into(),
        module_with_body(&giant_body(8_000_000, 0)),
        Expect::InvalidAt,
    );

    // Unknown and oversized sections.
    let fib = &modules.iter().find(|(n, _)| n == "fib").unwrap().1;
    for id in [14u8, 0x7f, 0xff] {
        add(
            "unknown sections",
            format!("section id {id}"),
            with_section(fib, id, b"xyz"),
            Expect::InvalidAt,
        );
    }
    let mut custom = Vec::new();
    leb(&mut custom, 100);
    custom.extend(b"short");
    add(
        "unknown sections",
        "custom section whose name runs past it".into(),
        with_section(fib, 0, &custom),
        Expect::InvalidAt,
    );
    let named = wasm_encoder::CustomSection {
        name: "hostile.unknown".into(),
        data: b"whatever"[..].into(),
    };
    let mut m = Module::new();
    m.section(&named);
    let mut with_custom = fib.clone();
    with_custom.extend(&m.finish()[8..]);
    add(
        "unknown sections",
        "unknown custom section (valid, kept)".into(),
        with_custom,
        Expect::Valid,
    );
    for (what, size) in [
        ("size 2^32-1", u32::MAX as u64),
        ("size file+1", fib.len() as u64 + 1),
    ] {
        let mut bytes = fib.clone();
        bytes.push(0x0b);
        leb(&mut bytes, size);
        bytes.extend([0x00]);
        add(
            "section sizes past the end",
            format!("data section of {what}"),
            bytes,
            Expect::InvalidAt,
        );
    }
    let mut raw = Module::new();
    raw.section(&RawSection {
        id: 1,
        data: &[0x01, 0x60, 0x00, 0x00, 0x99],
    });
    add(
        "section sizes past the end",
        "type section with a trailing byte".into(),
        raw.finish(),
        Expect::InvalidAt,
    );

    // Features the pass refuses (lib.rs's design comment, README "Where we
    // differ"), a component, and a module with nowhere to put the buffer.
    for (what, text) in REFUSED {
        add(
            "refused features",
            what.to_string(),
            wat(text),
            Expect::Refused(ErrorKind::Unsupported),
        );
    }
    add(
        "refused features",
        "no memory for the buffer".into(),
        wat(r#"(module (import "env" "sleep" (func $s)) (func (export "run") (call $s)))"#),
        Expect::Refused(ErrorKind::BadOptions),
    );

    // Already instrumented, by us and by Binaryen.
    for (name, wasm) in modules.iter().take(4) {
        let ours = instrument(wasm, &Options::default()).unwrap().wasm;
        add(
            "already instrumented",
            format!("{name} instrumented by wasm-rewind"),
            ours,
            Expect::Refused(ErrorKind::AlreadyInstrumented),
        );
    }
    add(
        "already instrumented",
        "fib instrumented by wasm-opt --asyncify".into(),
        binaryen_asyncify(fib),
        Expect::Refused(ErrorKind::AlreadyInstrumented),
    );

    // Not wasm at all.
    let mut noise = Rng(42);
    for (what, bytes) in [
        ("empty file", Vec::new()),
        ("magic only", b"\0asm".to_vec()),
        ("version 2", b"\0asm\x02\0\0\0".to_vec()),
        (
            "ELF header",
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec(),
        ),
        ("shell script", b"#!/bin/sh\necho hi\n".to_vec()),
        (
            "WAT with a syntax error, as bytes",
            b"(module (func (i32.add)))x".to_vec(),
        ),
        (
            "4 KiB of noise",
            (0..4096).map(|_| noise.next() as u8).collect(),
        ),
    ] {
        add("not wasm", what.into(), bytes, Expect::InvalidAt);
    }
    cases
}

/// Modules using what the pass refuses, as WAT.
const REFUSED: &[(&str, &str)] = &[
    (
        "externref live across an unwinding call",
        r#"(module (import "env" "sleep" (func $s)) (memory 1)
             (func (export "run") (param externref) (result externref)
               (call $s) (local.get 0)))"#,
    ),
    (
        "funcref on the operand stack across an unwinding call",
        r#"(module (import "env" "sleep" (func $s)) (memory 1) (table 1 funcref)
             (func (export "run") (result funcref)
               (table.get 0 (i32.const 0)) (call $s)))"#,
    ),
    (
        "call_ref that can unwind",
        r#"(module (type $t (func)) (import "env" "sleep" (func $s (type $t))) (memory 1)
             (elem declare func $f)
             (func $f (type $t) (call $s))
             (func (export "run") (call_ref $t (ref.func $f))))"#,
    ),
    (
        "return_call that can unwind inside a legacy try",
        r#"(module (import "env" "sleep" (func $s)) (memory 1)
             (func (export "run") try return_call $s catch_all end))"#,
    ),
    ("a component", "(component)"),
];

/// Runs the pass on `bytes` and checks the answer `expect` asks for.
fn check(case: &Case) -> Result<(), String> {
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| {
        instrument(&case.bytes, &Options::default())
    }));
    let took = start.elapsed();
    let result = result.map_err(|p| {
        let what = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("PANIC: {what}")
    })?;
    if took > Duration::from_secs(60) {
        return Err(format!("took {took:?}"));
    }
    let valid = || {
        wasmparser::Validator::new_with_features(wasm_rewind_transform::features())
            .validate_all(&case.bytes)
            .is_ok()
    };
    let expect = match case.expect {
        Expect::ByValidator if valid() => None,
        Expect::ByValidator => Some(Expect::InvalidAt),
        e => Some(e),
    };
    match (expect, result) {
        (None | Some(Expect::Valid), Ok(out)) => {
            wasmparser::Validator::new_with_features(wasm_rewind_transform::features())
                .validate_all(&out.wasm)
                .map_err(|e| format!("output is invalid: {e}"))?;
            Ok(())
        }
        (None, Err(e)) if !e.message().is_empty() && e.kind() != ErrorKind::Internal => Ok(()),
        (Some(Expect::InvalidAt), Err(e)) => match e.offset() {
            Some(o) if e.kind() == ErrorKind::InvalidInput && o <= case.bytes.len() => {
                if e.message().is_empty() {
                    Err("empty message".into())
                } else {
                    Ok(())
                }
            }
            _ => Err(format!(
                "want InvalidInput with an offset, got {:?}: {e}",
                e.kind()
            )),
        },
        (Some(Expect::Refused(kind)), Err(e)) if e.kind() == kind && !e.message().is_empty() => {
            Ok(())
        }
        (want, Err(e)) => Err(format!("want {want:?}, got {:?}: {e}", e.kind())),
        (want, Ok(_)) => Err(format!("want {want:?}, got a module")),
    }
}

/// The files of `corpus/hostile/` other than the README: each is refused,
/// except `valid_*` ones, which must instrument into a valid module.
fn kept_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("corpus/hostile"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    files
}

/// The kept file's bytes as the command line would read them (`.wat` parsed).
fn kept_case(path: &Path) -> Case {
    let raw = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = path.extension().is_some_and(|e| e == "wat");
    let (bytes, expect) = match text {
        true => match wat::parse_bytes(&raw) {
            Ok(w) => (w.into_owned(), Expect::Refused(ErrorKind::Unsupported)),
            // A syntax error: the library never sees it; the CLI reports it.
            Err(_) => (raw, Expect::InvalidAt),
        },
        // `valid_*`: hostile only in a part engines ignore.
        false if name.starts_with("valid_") => (raw, Expect::Valid),
        false => (raw, Expect::InvalidAt),
    };
    Case {
        kind: "kept in corpus/hostile",
        name,
        bytes,
        expect,
    }
}

#[test]
fn every_hostile_input_gets_an_error_never_a_panic() {
    let mut cases = corpus();
    cases.extend(kept_files().iter().map(|p| kept_case(p)));
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            check(c)
                .err()
                .map(|e| format!("{} / {}: {e}", c.kind, c.name))
        })
        .collect();
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for c in &cases {
        match kinds.iter_mut().find(|(k, _)| *k == c.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((c.kind, 1)),
        }
    }
    println!("hostile inputs tried: {}", cases.len());
    for (kind, n) in &kinds {
        println!("  {n:6}  {kind}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile inputs misbehaved:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn huge_local_counts_fail_fast_without_allocating() {
    // Peak resident memory of this process before and after: a pass that
    // allocated per declared local would take gigabytes here.
    let before = peak_rss_kib();
    for groups in [vec![u32::MAX], vec![50_000_000], vec![1 << 31, 1 << 31]] {
        let wasm = module_with_body(&locals_body(&groups));
        let start = Instant::now();
        let err = instrument(&wasm, &Options::default()).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5), "slow: {err}");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("locals"), "{err}");
    }
    let grown = peak_rss_kib() - before;
    assert!(grown < 64 * 1024, "peak RSS grew by {grown} KiB");
}

/// `VmHWM` of this process, in KiB.
fn peak_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[test]
fn the_command_line_refuses_a_representative_subset() {
    let mut cases = corpus();
    // One or two of each kind, the first and the last, plus the kept files.
    let mut chosen: Vec<Case> = Vec::new();
    let kinds: Vec<&str> = {
        let mut k: Vec<&str> = cases.iter().map(|c| c.kind).collect();
        k.dedup();
        k
    };
    for kind in kinds {
        let of_kind: Vec<usize> = (0..cases.len())
            .filter(|&i| cases[i].kind == kind && is_refused(&cases[i]))
            .collect();
        let take: Vec<usize> = match kind {
            "refused features" | "not wasm" | "huge local counts" | "unknown sections" => of_kind,
            _ => of_kind
                .iter()
                .step_by((of_kind.len() / 3).max(1))
                .copied()
                .collect(),
        };
        for i in take.into_iter().rev() {
            chosen.push(cases.swap_remove(i));
        }
    }
    let kept: Vec<PathBuf> = kept_files()
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("valid_")
        })
        .collect();
    let mut runs = 0;
    let mut failures = Vec::new();
    for (i, case) in chosen.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.wasm"), &case.bytes).unwrap();
        let previous =
            (i % 2 == 0).then(|| std::fs::write(dir.path().join("out.wasm"), b"previous").unwrap());
        if let Err(e) = cli_refuses(
            dir.path(),
            "in.wasm",
            previous.is_some(),
            needs_offset(case),
        ) {
            failures.push(format!("{} / {}: {e}", case.kind, case.name));
        }
        runs += 1;
    }
    for (i, path) in kept.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(path, dir.path().join(&name)).unwrap();
        if i % 2 == 0 {
            std::fs::write(dir.path().join("out.wasm"), b"previous").unwrap();
        }
        let offset = std::fs::read(path).unwrap().starts_with(b"\0asm") && !name.ends_with(".wat");
        if let Err(e) = cli_refuses(dir.path(), &name, i % 2 == 0, offset) {
            failures.push(format!("corpus/hostile/{name}: {e}"));
        }
        runs += 1;
    }
    println!("command-line runs on hostile inputs: {runs}");
    assert!(runs >= 30, "only {runs} runs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Whether the library refuses the case (valid mutations are not for the CLI
/// subset).
fn is_refused(case: &Case) -> bool {
    !matches!(case.expect, Expect::Valid) && instrument(&case.bytes, &Options::default()).is_err()
}

/// Whether the library's error carries an offset the CLI must print. Bytes
/// that do not start with the wasm magic are read as text, whose errors give
/// `file:line:column` instead (checked by [`cli_refuses`]).
fn needs_offset(case: &Case) -> bool {
    case.bytes.starts_with(b"\0asm")
        && instrument(&case.bytes, &Options::default())
            .err()
            .is_some_and(|e| e.offset().is_some())
}

/// Runs `wasm-rewind instrument INPUT out.wasm` in `dir` and checks the
/// refusal: status 1, `error:` naming the input (and an offset when there is
/// one), no panic, and `out.wasm` absent or still `previous`.
fn cli_refuses(dir: &Path, input: &str, previous: bool, offset: bool) -> Result<(), String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasm-rewind"));
    cmd.args(["instrument", input, "out.wasm"]).current_dir(dir);
    let out = process::run(&mut cmd, CLI_TIMEOUT)?;
    let err = &out.stderr;
    if out.code != Some(1) {
        return Err(format!("exit {:?}, stderr:\n{err}", out.code));
    }
    if !err.starts_with("error:") || !err.contains(input) {
        return Err(format!(
            "message does not start with `error:` naming {input}:\n{err}"
        ));
    }
    if offset && !err.contains("offset 0x") {
        return Err(format!("no offset in:\n{err}"));
    }
    // Text (UTF-8, not the wasm magic) that does not parse: the position is
    // a line and column.
    let bytes = std::fs::read(dir.join(input)).unwrap();
    let text = !bytes.starts_with(b"\0asm")
        && std::str::from_utf8(&bytes).is_ok()
        && err.contains("as WebAssembly text");
    if text && !err.contains(&format!("--> {input}:")) {
        return Err(format!("no `{input}:line:column` in:\n{err}"));
    }
    if err.contains("panicked") || err.contains("RUST_BACKTRACE") {
        return Err(format!("panic:\n{err}"));
    }
    let mut listing: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listing.sort();
    let mut want = vec![input.to_string()];
    if previous {
        want.push("out.wasm".into());
        want.sort();
        let now = std::fs::read(dir.join("out.wasm")).unwrap();
        if now != b"previous" {
            return Err("the existing output was changed".into());
        }
    }
    if listing != want {
        return Err(format!("directory holds {listing:?}, want {want:?}"));
    }
    Ok(())
}
