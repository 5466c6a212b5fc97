//! What the host's imports do: the call they log, the answer they give and
//! whether they unwind.

use std::sync::Arc;

use wasmtime::ValType;

use super::Value;

/// One call of an import, as the module made it in state 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImportCall {
    /// `module.name`, e.g. `env.sleep`.
    pub name: String,
    /// The arguments.
    pub args: Vec<Value>,
}

/// Computes an import's results from the call and the result types.
pub type Answer = Arc<dyn Fn(&ImportCall, &[ValType]) -> Vec<Value> + Send + Sync>;

/// Where an import call stands, for an [`UnwindPolicy`]: which import it
/// calls and how many import calls came before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    /// Index of the import among the module's function imports (the
    /// differential oracle decides per import, and two imports may share a
    /// name).
    pub import: usize,
    /// Import calls made in state 0 before this one, over the whole life of
    /// the store (so a policy can pick "the first call" or a random subset).
    pub nth: usize,
}

/// Decides whether an import call unwinds.
pub type UnwindPolicy = Arc<dyn Fn(&ImportCall, At) -> bool + Send + Sync>;

/// An [`UnwindPolicy`] that never unwinds (the reference run).
pub fn never() -> UnwindPolicy {
    Arc::new(|_, _| false)
}

/// An [`UnwindPolicy`] that unwinds at every import call.
pub fn always() -> UnwindPolicy {
    Arc::new(|_, _| true)
}

/// An [`UnwindPolicy`] that unwinds at every call of the imports `names`
/// (`module.name`).
pub fn at_imports(names: &[&str]) -> UnwindPolicy {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    Arc::new(move |call, _| names.contains(&call.name))
}

/// An [`Answer`] from a plain function of the call (one result).
pub fn answer(f: impl Fn(&ImportCall) -> Value + Send + Sync + 'static) -> Answer {
    Arc::new(move |call, results| match results.len() {
        0 => vec![],
        1 => vec![f(call)],
        n => panic!("answer() covers one result, {} has {n}", call.name),
    })
}

/// FNV-1a over the import name and the argument bits: the deterministic host of
/// the corpus tests.
pub fn hash_call(call: &ImportCall) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for b in call.name.bytes() {
        eat(b);
    }
    for a in &call.args {
        for b in a.bits().to_le_bytes() {
            eat(b);
        }
    }
    h
}

/// The corpus host's answer: every result derived from [`hash_call`]. Integers use
/// the full range; floats are small finite multiples of 1/8 (never NaN, so
/// results cannot depend on NaN canonicalisation).
pub fn hash_answer() -> Answer {
    Arc::new(|call, results| {
        let h = hash_call(call);
        results
            .iter()
            .enumerate()
            .map(|(i, ty)| {
                let h = h.rotate_left(13 * i as u32);
                match ty {
                    ValType::I32 => Value::I32(h as i32),
                    ValType::I64 => Value::I64(h as i64),
                    ValType::F32 => Value::f32(((h % 2001) as f32 - 1000.0) / 8.0),
                    ValType::F64 => Value::f64(((h % 20001) as f64 - 10000.0) / 16.0),
                    other => panic!("corpus import result of type {other}"),
                }
            })
            .collect()
    })
}
