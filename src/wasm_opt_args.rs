//! wasm-opt's spelling of the pass, accepted by `instrument`.
//!
//! A post-link line written for Binaryen, such as
//! `wasm-opt app.wasm --asyncify --pass-arg=asyncify-imports@env.sleep -O2 -o out.wasm`,
//! works with `wasm-rewind instrument` in place of `wasm-opt`: the arguments
//! are rewritten into our flags before clap sees them, so clap keeps
//! validating (conflicts, values) one spelling only, and `--help` shows ours.
//!
//! - `--asyncify` is accepted and does nothing: instrumenting is what
//!   `instrument` does.
//! - `--pass-arg=KEY[@VALUE]`, `--pass-arg KEY[@VALUE]` and wasm-opt's short
//!   `-pa KEY[@VALUE]` map every `asyncify-*` argument Binaryen has onto a
//!   flag (see [`translate_pass_arg`]). A list value `@FILE` is Binaryen's
//!   response file, which our list flags read the same way.
//! - `-O`, `-O0`...`-O4`, `-Os`, `-Oz` are accepted and ignored with a note:
//!   our output needs no optimiser afterwards. Run `wasm-opt -O` separately if
//!   you want other optimisations.
//! - Any other pass argument, an unknown `asyncify-*` one, or
//!   `asyncify-relocatable` is an error naming the argument.

use anyhow::{bail, Result};
use std::ffi::OsString;
use wasm_rewind_transform::{OptionName, OPTIONS};

/// The arguments for clap and the notes to print (unless `--quiet`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Translated {
    /// The command line in our spelling.
    pub args: Vec<OsString>,
    /// What was accepted but ignored, for a `note:` line each.
    pub notes: Vec<String>,
}

/// Rewrites wasm-opt's spelling in the `instrument` subcommand's arguments;
/// other subcommands' arguments are returned unchanged.
///
/// `args` is the whole command line, program name first.
pub fn translate(args: Vec<OsString>) -> Result<Translated> {
    // The subcommand is the first argument that is not a flag; the top level
    // has no flag taking a value, so nothing else can come first.
    let sub = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'));
    let Some(sub) = sub.map(|i| i + 1) else {
        return Ok(Translated {
            args,
            notes: Vec::new(),
        });
    };
    if args[sub] != "instrument" {
        return Ok(Translated {
            args,
            notes: Vec::new(),
        });
    }
    let mut out = Translated {
        args: args[..=sub].to_vec(),
        notes: Vec::new(),
    };
    // The size of the secondary memory may come before or after the switch
    // that asks for one, so both are collected and combined at the end.
    let mut secondary = false;
    let mut secondary_size: Option<String> = None;
    let mut rest = args[sub + 1..].iter();
    while let Some(arg) = rest.next() {
        let Some(text) = arg.to_str() else {
            out.args.push(arg.clone());
            continue;
        };
        if text == "--" {
            // Everything after `--` is positional: copy it untouched.
            out.args.push(arg.clone());
            out.args.extend(rest.by_ref().cloned());
            break;
        }
        let pass_arg = if let Some(value) = text.strip_prefix("--pass-arg=") {
            Some(value.to_string())
        } else if text == "--pass-arg" || text == "-pa" {
            match rest.next().and_then(|v| v.to_str()) {
                Some(value) => Some(value.to_string()),
                None => {
                    bail!("{text} needs a value: KEY or KEY@VALUE, e.g. asyncify-imports@env.sleep")
                }
            }
        } else {
            None
        };
        if let Some(pass_arg) = pass_arg {
            match translate_pass_arg(&pass_arg)? {
                Flag::Args(flags) => out.args.extend(flags.into_iter().map(OsString::from)),
                Flag::SecondaryMemory => secondary = true,
                Flag::SecondaryMemorySize(pages) => secondary_size = Some(pages),
            }
            continue;
        }
        if text == "--asyncify" {
            continue;
        }
        if is_optimise_flag(text) {
            out.notes.push(format!(
                "{text} ignored: wasm-rewind's output needs no optimiser; \
                 run `wasm-opt {text}` separately for other optimisations"
            ));
            continue;
        }
        out.args.push(arg.clone());
    }
    match (secondary, secondary_size) {
        (true, Some(pages)) => out.args.push(format!("--secondary-memory={pages}").into()),
        (true, None) => out.args.push("--secondary-memory".into()),
        (false, Some(_)) => out.notes.push(
            "asyncify-secondary-memory-size ignored: it only applies with \
             asyncify-in-secondary-memory (as in wasm-opt)"
                .to_string(),
        ),
        (false, None) => {}
    }
    Ok(out)
}

/// wasm-opt's optimisation levels.
fn is_optimise_flag(arg: &str) -> bool {
    matches!(
        arg,
        "-O" | "-O0" | "-O1" | "-O2" | "-O3" | "-O4" | "-Os" | "-Oz"
    )
}

/// What one pass argument becomes.
#[derive(Debug, PartialEq, Eq)]
enum Flag {
    /// These arguments, in our spelling.
    Args(Vec<String>),
    /// `asyncify-in-secondary-memory`.
    SecondaryMemory,
    /// `asyncify-secondary-memory-size@PAGES`.
    SecondaryMemorySize(String),
}

/// Maps one `--pass-arg` value, `KEY` or `KEY@VALUE`, onto our flags.
///
/// | pass argument | flag |
/// |---|---|
/// | `asyncify-imports@LIST` | `--imports LIST` |
/// | `asyncify-ignore-imports` | `--ignore-imports` |
/// | `asyncify-ignore-indirect` | `--ignore-indirect` |
/// | `asyncify-onlylist@LIST` | `--only LIST` |
/// | `asyncify-addlist@LIST` | `--add LIST` |
/// | `asyncify-removelist@LIST` | `--remove LIST` |
/// | `asyncify-propagate-addlist` | `--propagate-add` |
/// | `asyncify-asserts` | `--asserts` |
/// | `asyncify-memory@NAME` | `--memory NAME` |
/// | `asyncify-in-secondary-memory` | `--secondary-memory` |
/// | `asyncify-secondary-memory-size@PAGES` | `--secondary-memory=PAGES` (with the above) |
/// | `asyncify-import-globals` | `--import-globals` |
/// | `asyncify-export-globals` | `--export-globals` |
/// | `asyncify-verbose` | `--stats` |
/// | `asyncify-relocatable` | refused |
fn translate_pass_arg(pass_arg: &str) -> Result<Flag> {
    let (key, value) = match pass_arg.split_once('@') {
        Some((k, v)) => (k, Some(v)),
        None => (pass_arg, None),
    };
    let flag = |f: &str| Flag::Args(vec![f.to_string()]);
    let list = |f: &str| -> Result<Flag> {
        match value {
            Some(v) => Ok(Flag::Args(vec![f.to_string(), v.to_string()])),
            None => bail!(
                "--pass-arg {key} needs a value: {key}@LIST (comma-separated, or @FILE with one \
                 entry per line), which is {f} LIST in wasm-rewind's spelling"
            ),
        }
    };
    let switch = |f: &str| -> Result<Flag> {
        // Binaryen reads these as present/absent and ignores a value; a value
        // is more likely a mistake than intended, so say so.
        match value {
            None => Ok(flag(f)),
            Some(v) => bail!("--pass-arg {key} takes no value (got `@{v}`); it maps to {f}"),
        }
    };
    // The pass arguments that map one to one onto an option come from the
    // library's table; the rest are spelled out below.
    let simple = OPTIONS
        .iter()
        .filter(|spec| spec.name != OptionName::SecondaryMemory)
        .find(|spec| spec.wasm_opt == Some(key));
    if let Some(spec) = simple {
        let flag = spec
            .flag
            .expect("an option Binaryen has is one of our flags");
        return if spec.takes_value {
            list(flag)
        } else {
            switch(flag)
        };
    }
    match key {
        "asyncify-in-secondary-memory" => {
            switch("--secondary-memory").map(|_| Flag::SecondaryMemory)
        }
        "asyncify-secondary-memory-size" => match value {
            Some(pages) if !pages.is_empty() && pages.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Flag::SecondaryMemorySize(pages.to_string()))
            }
            _ => bail!(
                "--pass-arg asyncify-secondary-memory-size needs a number of pages: \
                 asyncify-secondary-memory-size@PAGES"
            ),
        },
        "asyncify-verbose" => switch("--stats"),
        "asyncify-relocatable" => bail!(
            "--pass-arg asyncify-relocatable is not supported: wasm-rewind cannot yet instrument \
             a relocatable side module (its globals would need the memory base); instrument the \
             linked main module, or use wasm-opt for side modules"
        ),
        "asyncify-whitelist" => {
            bail!("--pass-arg asyncify-whitelist was renamed asyncify-onlylist (--only)")
        }
        "asyncify-blacklist" => {
            bail!("--pass-arg asyncify-blacklist was renamed asyncify-removelist (--remove)")
        }
        k if k.starts_with("asyncify-") => bail!(
            "unknown asyncify pass argument `{k}`; Binaryen's are asyncify-imports, \
             -ignore-imports, -ignore-indirect, -onlylist, -addlist, -removelist, \
             -propagate-addlist, -asserts, -memory, -in-secondary-memory, \
             -secondary-memory-size, -import-globals, -export-globals, -verbose \
             (see `wasm-rewind instrument --help` for our flags)"
        ),
        k => bail!(
            "--pass-arg `{k}` is not an asyncify argument; wasm-rewind only does the asyncify \
             pass: run `wasm-opt` for other passes before or after `wasm-rewind instrument`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{translate, translate_pass_arg, Flag};
    use std::ffi::OsString;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn ours(v: &[&str]) -> Vec<String> {
        translate(args(v))
            .unwrap()
            .args
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn both_spellings_and_the_short_one() {
        let want = [
            "w",
            "instrument",
            "in.wasm",
            "--imports",
            "env.a,env.b",
            "-o",
            "o.wasm",
        ];
        for spelling in [
            &["--pass-arg=asyncify-imports@env.a,env.b"][..],
            &["--pass-arg", "asyncify-imports@env.a,env.b"][..],
            &["-pa", "asyncify-imports@env.a,env.b"][..],
        ] {
            let mut v = vec!["w", "instrument", "in.wasm", "--asyncify"];
            v.extend_from_slice(spelling);
            v.extend_from_slice(&["-o", "o.wasm"]);
            assert_eq!(ours(&v), want, "{spelling:?}");
        }
    }

    #[test]
    fn response_files_pass_through() {
        assert_eq!(
            translate_pass_arg("asyncify-removelist@@names.txt").unwrap(),
            Flag::Args(vec!["--remove".into(), "@names.txt".into()])
        );
    }

    #[test]
    fn secondary_memory_size_combines_in_either_order() {
        let a = ours(&[
            "w",
            "instrument",
            "i",
            "--pass-arg=asyncify-secondary-memory-size@3",
            "--pass-arg=asyncify-in-secondary-memory",
        ]);
        assert_eq!(a, ["w", "instrument", "i", "--secondary-memory=3"]);
        let t = translate(args(&[
            "w",
            "instrument",
            "i",
            "--pass-arg=asyncify-secondary-memory-size@3",
        ]))
        .unwrap();
        assert_eq!(t.args, args(&["w", "instrument", "i"]));
        assert_eq!(t.notes.len(), 1);
    }

    #[test]
    fn optimise_flags_are_noted() {
        let t = translate(args(&["w", "instrument", "i", "-O2", "-Oz", "o"])).unwrap();
        assert_eq!(t.args, args(&["w", "instrument", "i", "o"]));
        assert!(t.notes[0].starts_with("-O2 ignored"), "{:?}", t.notes);
        assert_eq!(t.notes.len(), 2);
    }

    #[test]
    fn other_subcommands_and_positionals_are_untouched() {
        let run = args(&["w", "run", "app.wasm", "--", "--asyncify", "-O2"]);
        assert_eq!(translate(run.clone()).unwrap().args, run);
        assert_eq!(
            ours(&["w", "instrument", "i", "--", "-O2"]),
            ["w", "instrument", "i", "--", "-O2"]
        );
    }

    #[test]
    fn refusals_name_the_argument() {
        for (arg, needle) in [
            ("asyncify-relocatable", "asyncify-relocatable"),
            ("asyncify-frobnicate", "asyncify-frobnicate"),
            ("inlining-limit@5", "inlining-limit"),
            ("asyncify-imports", "asyncify-imports@LIST"),
            ("asyncify-asserts@1", "takes no value"),
            ("asyncify-whitelist@f", "asyncify-onlylist"),
            ("asyncify-secondary-memory-size@x", "number of pages"),
        ] {
            let err = translate_pass_arg(arg).unwrap_err().to_string();
            assert!(err.contains(needle), "{arg}: {err}");
        }
        let err = translate(args(&["w", "instrument", "i", "--pass-arg"])).unwrap_err();
        assert!(err.to_string().contains("needs a value"), "{err}");
    }
}

/// The library's option table and this translation agree: every option
/// Binaryen has maps onto the option's own flag, with or without a value as
/// the table says.
#[cfg(test)]
mod agrees_with_the_option_table {
    use super::{translate_pass_arg, Flag};
    use wasm_rewind_transform::{OptionName, OPTIONS};

    #[test]
    fn every_binaryen_option() {
        for spec in OPTIONS.iter().filter(|s| s.wasm_opt.is_some()) {
            let key = spec.wasm_opt.unwrap();
            let flag = spec.flag.unwrap().to_string();
            if spec.name == OptionName::SecondaryMemory {
                assert_eq!(translate_pass_arg(key).unwrap(), Flag::SecondaryMemory);
                continue;
            }
            if spec.takes_value {
                let got = translate_pass_arg(&format!("{key}@x")).unwrap();
                assert_eq!(got, Flag::Args(vec![flag, "x".into()]), "{key}");
                assert!(translate_pass_arg(key).is_err(), "{key} needs a value");
            } else {
                assert_eq!(translate_pass_arg(key).unwrap(), Flag::Args(vec![flag]));
                assert!(translate_pass_arg(&format!("{key}@x")).is_err(), "{key}");
            }
        }
    }
}
