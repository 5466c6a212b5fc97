//! Wasm values as the tests compare and log them.

use wasmtime::{Val, ValType};

/// A wasm value that can be compared and printed (floats by their bits, so NaNs
/// compare exactly and nothing is lost in a log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// An `i32`.
    I32(i32),
    /// An `i64`.
    I64(i64),
    /// An `f32`, as its bits.
    F32(u32),
    /// An `f64`, as its bits.
    F64(u64),
    /// A `v128`.
    V128(u128),
}

impl Value {
    /// A `Value::F32` holding `x`.
    pub fn f32(x: f32) -> Value {
        Value::F32(x.to_bits())
    }

    /// A `Value::F64` holding `x`.
    pub fn f64(x: f64) -> Value {
        Value::F64(x.to_bits())
    }

    /// Converts from wasmtime; reference values are not used by these tests.
    pub fn from_val(val: &Val) -> Value {
        match val {
            Val::I32(x) => Value::I32(*x),
            Val::I64(x) => Value::I64(*x),
            Val::F32(x) => Value::F32(*x),
            Val::F64(x) => Value::F64(*x),
            Val::V128(x) => Value::V128(x.as_u128()),
            other => panic!("reference value {other:?} in an ABI test"),
        }
    }

    /// Converts to wasmtime.
    pub fn to_val(self) -> Val {
        match self {
            Value::I32(x) => Val::I32(x),
            Value::I64(x) => Val::I64(x),
            Value::F32(x) => Val::F32(x),
            Value::F64(x) => Val::F64(x),
            Value::V128(x) => Val::V128(x.into()),
        }
    }

    /// The zero of a type (what an unwinding import returns).
    pub fn zero_val(ty: &ValType) -> Val {
        Val::default_for_ty(ty).unwrap_or_else(|| panic!("no default value for {ty}"))
    }

    /// The bits of the value, for hashing.
    pub fn bits(self) -> u128 {
        match self {
            Value::I32(x) => x as u32 as u128,
            Value::I64(x) => x as u64 as u128,
            Value::F32(x) => x as u128,
            Value::F64(x) => x as u128,
            Value::V128(x) => x,
        }
    }
}

/// Converts wasmtime values to [`Value`]s.
pub fn values(vals: &[Val]) -> Vec<Value> {
    vals.iter().map(Value::from_val).collect()
}

/// `Value::I32`s, for argument and result lists.
pub fn i32s(xs: &[i32]) -> Vec<Value> {
    xs.iter().map(|&x| Value::I32(x)).collect()
}
