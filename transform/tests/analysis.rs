//! What the analysis decides: which functions are instrumented, why, and what
//! the pass refuses. Each test builds a module where the answer is known by
//! construction and checks the decision the library reports.

use wasm_rewind_transform::{instrument, ErrorKind, Instrumented, Options};

fn run(wat: &str, options: &Options) -> Instrumented {
    let wasm = wat::parse_str(wat).expect("test module parses");
    instrument(&wasm, options).expect("instrumentation succeeds")
}

fn instrumented(out: &Instrumented) -> Vec<&str> {
    out.decisions
        .iter()
        .filter(|d| d.instrumented)
        .map(|d| d.name.as_str())
        .collect()
}

const TABLE_MODULE: &str = r#"(module
  (import "env" "sleep" (func $sleep))
  (import "env" "log" (func $log))
  (memory 1)
  (type $t (func (param i32) (result i32)))
  (table $tab 2 funcref)
  (elem (table $tab) (i32.const 0) func $pure $pure2)
  (func $sleepy (type $t) (call $sleep) (local.get 0))
  (func $pure (type $t) (local.get 0))
  (func $pure2 (type $t) (call $log) (local.get 0))
  (func $run (export "run") (result i32) (call_indirect $tab (type $t) (i32.const 1) (i32.const 0))))"#;

#[test]
fn indirect_call_is_narrowed_to_what_the_private_table_holds() {
    let out = run(
        TABLE_MODULE,
        &Options {
            imports: Some(vec!["env.sleep".into()]),
            ..Options::default()
        },
    );
    // $sleepy is not in the table: `run` cannot reach it.
    assert_eq!(instrumented(&out), vec!["sleepy"]);
}

#[test]
fn indirect_call_through_an_exported_table_may_reach_anything() {
    let wat = TABLE_MODULE.replace(
        "(table $tab 2 funcref)",
        "(table $tab (export \"t\") 2 funcref)",
    );
    let opts = Options {
        imports: Some(vec!["env.sleep".into()]),
        ..Options::default()
    };
    let out = run(&wat, &opts);
    assert_eq!(instrumented(&out), vec!["sleepy", "run"]);
    let why = out.explain("run").unwrap();
    assert!(why[0].contains("from outside the module"), "{why:?}");
    // --ignore-indirect trusts indirect calls not to unwind.
    let out = run(
        &wat,
        &Options {
            ignore_indirect: true,
            ..opts
        },
    );
    assert_eq!(instrumented(&out), vec!["sleepy"]);
}

#[test]
fn table_holding_an_unwinding_function_makes_the_caller_unwind() {
    let wat = TABLE_MODULE.replace("func $pure $pure2", "func $pure $sleepy");
    let out = run(
        &wat,
        &Options {
            imports: Some(vec!["env.sleep".into()]),
            ..Options::default()
        },
    );
    assert_eq!(instrumented(&out), vec!["sleepy", "run"]);
    let why = out.explain("run").unwrap();
    assert_eq!(why.len(), 3, "{why:?}");
    assert!(why[0].starts_with("`run` is instrumented because its indirect call at offset 0x"));
    assert!(why[0].ends_with("can reach `sleepy`"), "{why:?}");
    assert!(why[1].starts_with("`sleepy` is instrumented because it calls `env.sleep`"));
    assert!(why[2].starts_with("`env.sleep` is an import that may unwind"));
}

#[test]
fn default_import_list_is_every_import() {
    let out = run(TABLE_MODULE, &Options::default());
    assert_eq!(instrumented(&out), vec!["sleepy", "pure2", "run"]);
    let out = run(
        TABLE_MODULE,
        &Options {
            imports: Some(vec!["env.s*".into()]),
            ..Options::default()
        },
    );
    assert_eq!(instrumented(&out), vec!["sleepy"]);
    let out = run(
        TABLE_MODULE,
        &Options {
            ignore_imports: true,
            ..Options::default()
        },
    );
    assert!(instrumented(&out).is_empty());
}

const CHAIN: &str = r#"(module
  (import "env" "sleep" (func $sleep))
  (memory 1)
  (func $leaf (call $sleep))
  (func $mid (call $leaf))
  (func $top (export "top") (call $mid))
  (func $other (export "other") (nop)))"#;

#[test]
fn remove_list_stops_propagation() {
    let out = run(
        CHAIN,
        &Options {
            remove: vec!["mid".into()],
            ..Options::default()
        },
    );
    assert_eq!(instrumented(&out), vec!["leaf"]);
}

#[test]
fn add_list_instruments_without_propagating_unless_asked() {
    let opts = Options {
        ignore_imports: true,
        add: vec!["leaf".into()],
        ..Options::default()
    };
    assert_eq!(instrumented(&run(CHAIN, &opts)), vec!["leaf"]);
    let opts = Options {
        propagate_add: true,
        ..opts
    };
    assert_eq!(instrumented(&run(CHAIN, &opts)), vec!["leaf", "mid", "top"]);
}

#[test]
fn only_list_decides_everything() {
    let out = run(
        CHAIN,
        &Options {
            only: Some(vec!["top".into(), "other".into()]),
            ..Options::default()
        },
    );
    assert_eq!(instrumented(&out), vec!["top", "other"]);
    let err = instrument(
        &wat::parse_str(CHAIN).unwrap(),
        &Options {
            only: Some(vec!["top".into()]),
            add: vec!["leaf".into()],
            ..Options::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadOptions);
}

#[test]
fn in_module_runtime_roles() {
    let out = run(
        r#"(module
          (import "asyncify" "start_unwind" (func $start_unwind (param i32)))
          (import "asyncify" "stop_unwind" (func $stop_unwind))
          (import "asyncify" "start_rewind" (func $start_rewind (param i32)))
          (import "asyncify" "stop_rewind" (func $stop_rewind))
          (memory 1)
          (func $sleep (call $start_unwind (i32.const 16)))
          (func $work (call $sleep))
          (func $main_loop (export "main") (call $work) (call $stop_unwind) (call $start_rewind (i32.const 16)) (call $work)))"#,
        &Options::default(),
    );
    // The bottom ($sleep) and the top ($main_loop) are runtime, not instrumented.
    assert_eq!(instrumented(&out), vec!["work"]);
    let imports: Vec<String> = wasmparser::Parser::new(0)
        .parse_all(&out.wasm)
        .filter_map(|p| match p.unwrap() {
            wasmparser::Payload::ImportSection(r) => Some(
                r.into_imports()
                    .map(|i| i.unwrap().module.to_string())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        imports.is_empty(),
        "asyncify.* imports are gone: {imports:?}"
    );
}

#[test]
fn refuses_already_instrumented_input() {
    let out = run(CHAIN, &Options::default());
    let err = instrument(&out.wasm, &Options::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyInstrumented);
    assert!(err.to_string().contains("already instrumented"), "{err}");
}

#[test]
fn invalid_and_truncated_input_report_offsets() {
    let wasm = wat::parse_str(CHAIN).unwrap();
    for cut in [3, 9, wasm.len() / 2, wasm.len() - 1] {
        let err = instrument(&wasm[..cut], &Options::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "cut at {cut}");
        assert!(err.to_string().contains("(at offset 0x"), "{err}");
    }
}

#[test]
fn refuses_reference_values_live_across_an_unwind_with_the_function_name() {
    let err = instrument(
        &wat::parse_str(
            r#"(module
              (import "env" "sleep" (func $sleep))
              (memory 1)
              (func $keeps_ref (export "f") (param $r externref) (result externref)
                (call $sleep) (local.get $r)))"#,
        )
        .unwrap(),
        &Options::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    let msg = err.to_string();
    assert!(
        msg.contains("keeps_ref") && msg.contains("externref"),
        "{msg}"
    );
}

#[test]
fn call_ref_that_can_unwind_is_refused_not_ignored() {
    let wat = r#"(module
      (import "env" "sleep" (func $sleep))
      (memory 1)
      (type $v (func))
      (elem declare func $sleepy)
      (func $sleepy (type $v) (call $sleep))
      (func $calls_ref (export "f") (call_ref $v (ref.func $sleepy))))"#;
    let err = instrument(&wat::parse_str(wat).unwrap(), &Options::default()).unwrap_err();
    assert!(err.to_string().contains("call_ref") && err.to_string().contains("calls_ref"));
    // With the target narrowed to functions that cannot unwind, it passes.
    let out = run(
        wat,
        &Options {
            imports: Some(vec!["env.none".into()]),
            ..Options::default()
        },
    );
    assert!(instrumented(&out).is_empty());
}

#[test]
fn tail_calls_outside_unwinding_paths_are_untouched() {
    let out = run(
        r#"(module
          (import "env" "sleep" (func $sleep))
          (memory 1)
          (func $a (param i32) (result i32) (return_call $b (local.get 0)))
          (func $b (param i32) (result i32) (local.get 0))
          (func $s (export "s") (call $sleep)))"#,
        &Options::default(),
    );
    assert_eq!(instrumented(&out), vec!["s"]);
}

#[test]
fn no_memory_needs_a_secondary_memory() {
    let wat = r#"(module (import "env" "sleep" (func $sleep)) (func (export "f") (call $sleep)))"#;
    let err = instrument(&wat::parse_str(wat).unwrap(), &Options::default()).unwrap_err();
    assert!(
        err.to_string().contains("`Options::secondary_memory`"),
        "{err}"
    );
    let for_cli = wasm_rewind_transform::with_flags(&err.to_string());
    assert!(
        for_cli.contains("use --secondary-memory to add one"),
        "{for_cli}"
    );
    let out = run(
        wat,
        &Options {
            secondary_memory: Some(1),
            ..Options::default()
        },
    );
    assert_eq!(instrumented(&out), vec!["f"]);
}

#[test]
fn sites_with_different_live_sets_save_different_frames() {
    // After the first call only $a is live; after the second, six others are.
    let out = run(
        r#"(module
          (import "env" "sleep" (func $sleep))
          (memory 1)
          (func (export "f") (param $a i32) (result i64)
            (local $b i64) (local $c i64) (local $d i64) (local $e i64) (local $g i64) (local $h i64)
            (call $sleep)
            (local.set $b (i64.extend_i32_u (local.get $a)))
            (local.set $c (i64.mul (local.get $b) (i64.const 3)))
            (local.set $d (i64.add (local.get $c) (i64.const 1)))
            (local.set $e (i64.xor (local.get $d) (local.get $b)))
            (local.set $g (i64.sub (local.get $e) (local.get $c)))
            (local.set $h (i64.rotl (local.get $g) (local.get $d)))
            (call $sleep)
            (i64.add (i64.add (local.get $b) (local.get $c))
                     (i64.add (i64.add (local.get $d) (local.get $e))
                              (i64.add (local.get $g) (local.get $h))))))"#,
        &Options::default(),
    );
    assert_eq!(out.stats.resumable_call_sites, 2);
    assert_eq!(out.stats.frame_layouts, 2);
    assert_eq!(out.stats.exact_frames, 2);
}

#[test]
fn preset_wasix_does_not_warn_about_the_other_word_size() {
    let out = run(
        r#"(module
          (import "wasix_32v1" "stack_checkpoint" (func $cp (param i32 i32) (result i32)))
          (memory 1)
          (global $__stack_pointer (mut i32) (i32.const 4096))
          (global $__stack_low i32 (i32.const 1024))
          (func (export "f") (result i32) (call $cp (i32.const 0) (i32.const 8))))"#,
        &Options::wasix(),
    );
    assert_eq!(instrumented(&out), vec!["f"]);
    assert!(
        out.stats.warnings.iter().all(|w| !w.contains("wasix_64v1")),
        "{:?}",
        out.stats.warnings
    );
}

#[test]
fn modules_calling_wasix_stack_functions_export_their_stack_and_keep_the_buffer_in_memory_0() {
    let wat = r#"(module
      (import "wasix_32v1" "stack_checkpoint" (func $cp (param i32 i32) (result i32)))
      (memory 2)
      (global $__stack_pointer (mut i32) (i32.const 70000))
      (global $__data_end i32 (i32.const 1028))
      (data (i32.const 1024) "abc")
      (func (export "f") (result i32) (call $cp (global.get $__stack_pointer) (i32.const 8))))"#;
    let exports = |wasm: &[u8]| -> Vec<String> {
        wasmparser::Parser::new(0)
            .parse_all(wasm)
            .filter_map(|p| match p.unwrap() {
                wasmparser::Payload::ExportSection(r) => Some(
                    r.into_iter()
                        .map(|e| e.unwrap().name.to_string())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect()
    };
    // Binaryen's ABI, as Wasmer drives it: the buffer in memory 0, the
    // stack's globals exported, and the hook our host grows the buffer by.
    let out = run(wat, &Options::default());
    let names = exports(&out.wasm);
    for name in ["__stack_pointer", "__data_end", "__wasm_rewind_grow_hook"] {
        assert!(names.contains(&name.to_string()), "{name}: {names:?}");
    }
    assert!(!names.contains(&"asyncify_memory".to_string()), "{names:?}");
    // A memory of its own only when asked.
    let out = run(
        wat,
        &Options {
            secondary_memory: Some(4),
            ..Options::default()
        },
    );
    assert!(exports(&out.wasm).contains(&"asyncify_memory".to_string()));
    // A module that does not call them is left as Binaryen would.
    let plain = run(&wat.replace("wasix_32v1", "env"), &Options::default());
    let names = exports(&plain.wasm);
    assert!(!names.contains(&"asyncify_memory".to_string()), "{names:?}");
    assert!(!names.contains(&"__stack_pointer".to_string()), "{names:?}");
    assert!(
        !names.contains(&"__wasm_rewind_grow_hook".to_string()),
        "{names:?}"
    );
}

/// Contradictory options are reported before any function body is read, so
/// a user waiting on a large module learns of them at once: here the only
/// body is invalid, and the error is still about the options.
#[test]
fn options_are_checked_before_bodies() {
    // `wat` checks syntax, not types: `i32.add` on an empty stack encodes.
    let wasm = wat::parse_str("(module (memory 1) (func i32.add drop))").unwrap();
    let body_error = instrument(&wasm, &Options::default()).unwrap_err();
    assert_ne!(body_error.kind(), ErrorKind::BadOptions, "{body_error}");
    let bad = [
        Options {
            only: Some(vec!["f".into()]),
            remove: vec!["g".into()],
            ..Options::default()
        },
        Options {
            memory: Some("0".into()),
            secondary_memory: Some(1),
            ..Options::default()
        },
        Options {
            secondary_memory: Some(0),
            ..Options::default()
        },
        Options {
            embed_runtime: true,
            import_globals: true,
            ..Options::default()
        },
        Options {
            embed_runtime: true,
            embed_max_memory: Some(4096),
            ..Options::default()
        },
        Options {
            memory: Some("nope".into()),
            ..Options::default()
        },
    ];
    for options in bad {
        let err = instrument(&wasm, &options).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadOptions, "{options:?}: {err}");
    }
}

/// A WASIX call that unwinds (here `context_switch` and `stack_checkpoint`)
/// unwinds whatever the import list says, with a warning naming it: its
/// host always starts an unwind from it, and a caller left uninstrumented
/// would run on in the unwinding state.
#[test]
fn wasix_unwinding_calls_unwind_even_when_the_list_leaves_them_out() {
    let wat = r#"(module
      (import "wasix_32v1" "context_switch" (func $switch (param i64) (result i32)))
      (import "wasix_32v1" "stack_checkpoint" (func $checkpoint (param i32 i32) (result i32)))
      (import "wasix_32v1" "context_create" (func $create (param i32 i32) (result i32)))
      (import "env" "sleep" (func $sleep))
      (memory (export "memory") 1)
      (global $__stack_pointer (export "__stack_pointer") (mut i32) (i32.const 4096))
      (global $__stack_low (export "__stack_low") i32 (i32.const 1024))
      (func $yield (export "yield") (drop (call $switch (i64.const 0))))
      (func $armed (export "armed") (drop (call $checkpoint (i32.const 0) (i32.const 8))))
      (func $make (export "make") (drop (call $create (i32.const 0) (i32.const 0))))
      (func $nap (export "nap") (call $sleep)))"#;
    for options in [
        Options {
            imports: Some(vec!["env.sleep".into()]),
            ..Options::default()
        },
        Options {
            ignore_imports: true,
            ..Options::default()
        },
    ] {
        let out = run(wat, &options);
        let names = instrumented(&out);
        assert!(
            names.contains(&"yield") && names.contains(&"armed"),
            "{names:?}"
        );
        assert!(
            !names.contains(&"make"),
            "create does not unwind: {names:?}"
        );
        assert_eq!(names.contains(&"nap"), !options.ignore_imports, "{names:?}");
        let warned: Vec<&String> = out
            .stats
            .warnings
            .iter()
            .filter(|w| w.contains("unwinds even though"))
            .collect();
        assert_eq!(warned.len(), 2, "{:?}", out.stats.warnings);
        assert!(
            warned[0].contains("wasix_32v1.context_switch"),
            "{warned:?}"
        );
    }
}

/// Calls that can unwind only on the way to `stack_restore` (longjmp) are
/// never resumed: hosts discard the frames a restore unwinds. Here `throw`
/// calls only the restore, `deep` only `throw`, `both` calls `deep` and the
/// checkpoint, and `run` calls `both`; `tail` tail-calls `throw`; the
/// indirect call in `pick` can reach only `throw`, the one in `any` also
/// `armed`, which calls the checkpoint.
const RESTORE_ONLY: &str = r#"(module
  (import "wasix_32v1" "stack_checkpoint" (func $cp (param i32 i32) (result i32)))
  (import "wasix_32v1" "stack_restore" (func $rs (param i32 i64)))
  (memory (export "memory") 1)
  (global $__stack_pointer (export "__stack_pointer") (mut i32) (i32.const 4096))
  (global $__stack_low (export "__stack_low") i32 (i32.const 1024))
  (type $one (func (param i32)))
  (type $two (func (param i32 i32)))
  (table $t1 1 funcref)
  (elem (table $t1) (i32.const 0) func $throw)
  (table $t2 2 funcref)
  (elem (table $t2) (i32.const 0) func $throw2 $armed)
  (func $throw (type $one) (call $rs (local.get 0) (i64.const 1)))
  (func $throw2 (type $two) (call $rs (local.get 0) (i64.const 2)))
  (func $armed (type $two) (drop (call $cp (local.get 0) (local.get 1))))
  (func $deep (param i32) (result i32) (call $throw (local.get 0)) (local.get 0))
  (func $tail (export "tail") (param i32) (return_call $throw (local.get 0)))
  (type $three (func (param i32 i64)))
  (func $throw3 (type $three) (call $rs (local.get 0) (local.get 1)))
  (elem declare func $throw3)
  (func $tail_ref (export "tail_ref") (param i32)
    (return_call_ref $three (local.get 0) (i64.const 3) (ref.func $throw3)))
  (func $both (param i32) (result i32)
    (drop (call $cp (local.get 0) (i32.const 64)))
    (call $deep (local.get 0)))
  (func $pick (export "pick") (param i32)
    (call_indirect $t1 (type $one) (local.get 0) (i32.const 0)))
  (func $any (export "any") (param i32)
    (call_indirect $t2 (type $two) (local.get 0) (i32.const 8) (local.get 0)))
  (func $run (export "run") (result i32) (call $both (i32.const 16))))"#;

#[test]
fn calls_that_unwind_only_to_stack_restore_are_not_resume_points() {
    let out = run(RESTORE_ONLY, &Options::default());
    let names = instrumented(&out);
    for f in [
        "throw", "throw2", "throw3", "armed", "deep", "tail", "tail_ref", "both", "pick", "any",
        "run",
    ] {
        assert!(names.contains(&f), "{f} unwinds: {names:?}");
    }
    // Resumed: `both` at the checkpoint, `armed` at the checkpoint, `any`'s
    // indirect call, `run` at `both`.
    assert_eq!(out.stats.resumable_call_sites, 4, "{:?}", out.stats);
    // Never resumed: the restores in `throw`, `throw2` and `throw3`, `deep`
    // at `throw`, the tail calls of `tail` and `tail_ref` (which stay tail
    // calls; `tail_ref`'s `return_call_ref` can only reach `throw3`, so its
    // function reference need not be kept), `both` at `deep`, `pick`'s
    // indirect call.
    assert_eq!(out.stats.unwind_only_calls, 8, "{:?}", out.stats);
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&out.wasm)
        .expect("the output validates");
    // Each tail call is still one, and no unwind check follows it (it would
    // be dead code).
    let ops: Vec<wasmparser::Operator> = wasmparser::Parser::new(0)
        .parse_all(&out.wasm)
        .filter_map(|p| match p.unwrap() {
            wasmparser::Payload::CodeSectionEntry(body) => Some(body),
            _ => None,
        })
        .flat_map(|body| {
            let ops: Vec<_> = body
                .get_operators_reader()
                .unwrap()
                .into_iter()
                .map(Result::unwrap)
                .collect();
            ops
        })
        .collect();
    let tail_calls: Vec<usize> = (0..ops.len())
        .filter(|&i| {
            matches!(
                ops[i],
                wasmparser::Operator::ReturnCall { .. }
                    | wasmparser::Operator::ReturnCallRef { .. }
            )
        })
        .collect();
    assert_eq!(
        tail_calls.len(),
        2,
        "`tail` and `tail_ref` keep their tail calls"
    );
    for i in tail_calls {
        assert!(
            !matches!(ops[i + 1], wasmparser::Operator::GlobalGet { .. }),
            "{:?} is followed by {:?}",
            ops[i],
            ops[i + 1]
        );
    }

    // With --only the lists decide alone: every call that unwinds resumes.
    let only = Options {
        only: Some(
            [
                "throw", "throw2", "armed", "deep", "tail", "both", "pick", "any", "run",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ..Options::default()
    };
    let out = run(RESTORE_ONLY, &only);
    assert_eq!(out.stats.resumable_call_sites, 10, "{:?}", out.stats);
    assert_eq!(out.stats.unwind_only_calls, 0, "{:?}", out.stats);
}
