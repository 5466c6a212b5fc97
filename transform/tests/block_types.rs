//! The emitter and the prediction of the block types it will ask for
//! (`for_each_block_type` in `instrument/mod.rs`) agree.
//!
//! Types are interned before functions are emitted in parallel, from the
//! prediction. A type the prediction misses stops the pass with an internal
//! error ("block type was not interned"); a type it predicts that the
//! emitter never uses would be dead weight in every output. This test runs
//! the corpus, whose functions have every frame shape we know of, under
//! the option sets that change what is emitted, and checks both: the pass
//! succeeds, and every type in the output's type section is used.

use std::collections::BTreeSet;
use wasm_rewind_transform::{instrument, Options};
use wasmparser::{BlockType, Operator, Payload, TypeRef};

/// Type indices the output uses, and how many types it defines.
fn used_types(wasm: &[u8]) -> (BTreeSet<u32>, u32) {
    let mut used = BTreeSet::new();
    let mut defined = 0;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.unwrap() {
            Payload::TypeSection(reader) => defined = reader.count(),
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    match import.unwrap().ty {
                        TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                            used.insert(t);
                        }
                        TypeRef::Tag(t) => {
                            used.insert(t.func_type_idx);
                        }
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                used.extend(reader.into_iter().map(|t| t.unwrap()));
            }
            Payload::TagSection(reader) => {
                used.extend(reader.into_iter().map(|t| t.unwrap().func_type_idx));
            }
            Payload::CodeSectionEntry(body) => {
                for op in body.get_operators_reader().unwrap() {
                    match op.unwrap() {
                        Operator::Block { blockty }
                        | Operator::Loop { blockty }
                        | Operator::If { blockty }
                        | Operator::Try { blockty }
                        | Operator::TryTable {
                            try_table: wasmparser::TryTable { ty: blockty, .. },
                        } => {
                            if let BlockType::FuncType(t) = blockty {
                                used.insert(t);
                            }
                        }
                        Operator::CallIndirect { type_index, .. }
                        | Operator::ReturnCallIndirect { type_index, .. }
                        | Operator::CallRef { type_index }
                        | Operator::ReturnCallRef { type_index } => {
                            used.insert(type_index);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (used, defined)
}

#[test]
fn every_added_type_is_used_and_none_is_missing() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/wat");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wat"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the corpus is at {}", dir.display());
    let option_sets = [
        Options::default(),
        Options {
            asserts: true,
            ..Options::default()
        },
        Options {
            import_globals: true,
            ..Options::default()
        },
        Options {
            ignore_indirect: true,
            ..Options::default()
        },
    ];
    for file in &files {
        let input = wat::parse_file(file).unwrap();
        let (used_in, defined_in) = used_types(&input);
        for options in &option_sets {
            let out =
                instrument(&input, options).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let (used, defined) = used_types(&out.wasm);
            // The input's own unused types stay (indices must not move);
            // every type the pass added must be used.
            let unused: Vec<u32> = (defined_in..defined)
                .filter(|t| !used.contains(t))
                .collect();
            assert!(
                unused.is_empty(),
                "{} {options:?}: added types {unused:?} are never used (input had {defined_in}, \
                 of which {} used)",
                file.display(),
                used_in.len()
            );
        }
    }
}
