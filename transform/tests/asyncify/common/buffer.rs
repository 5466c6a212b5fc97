//! Where the asyncify data structure lives: `{pos, end}` and the buffer after
//! it, in some exported memory, with 32- or 64-bit fields.

use wasmtime::Val;

/// Where the corpus convention puts the asyncify data structure: bytes
/// `[0xF000, 0x10000)` of memory 0 are never touched by a corpus module.
pub const RESERVED_START: u64 = 0xF000;
/// One past the last reserved byte.
pub const RESERVED_END: u64 = 0x1_0000;

/// The `{pos, end}` structure at `ptr` in the exported memory `memory`, and
/// `size` bytes of buffer right after it. On a memory64 memory (`wide`) the
/// pointer and both fields are i64 and the structure is 16 bytes; otherwise
/// they are i32 and it is 8. The ABI wants `pos = ptr + header`,
/// `end = pos + size` before an unwind; [`Buffer::start`] and [`Buffer::end`]
/// are those two addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Export name of the memory holding the structure and the buffer.
    pub memory: String,
    /// Address of `{pos, end}`.
    pub ptr: u64,
    /// Bytes of buffer after the structure.
    pub size: u64,
    /// Whether the memory is 64-bit (i64 pointer and fields).
    pub wide: bool,
}

impl Buffer {
    /// A structure with i32 fields at `ptr` in the exported memory `memory`.
    pub fn new(memory: &str, ptr: u64, size: u64) -> Buffer {
        Buffer {
            memory: memory.to_string(),
            ptr,
            size,
            wide: false,
        }
    }

    /// A structure with i64 fields at `ptr` in the exported memory64 `memory`.
    pub fn wide(memory: &str, ptr: u64, size: u64) -> Buffer {
        Buffer {
            wide: true,
            ..Buffer::new(memory, ptr, size)
        }
    }

    /// A structure at `ptr` in memory 0 (exported as `memory`), i32 fields:
    /// the layout of every module that Binaryen also instruments.
    pub fn at(ptr: u64, size: u64) -> Buffer {
        Buffer::new("memory", ptr, size)
    }

    /// The whole reserved region of the corpus convention
    /// ([`RESERVED_START`]..[`RESERVED_END`] of memory 0).
    pub fn reserved() -> Buffer {
        Buffer::at(RESERVED_START, RESERVED_END - RESERVED_START - 8)
    }

    /// Size of the `{pos, end}` structure.
    pub fn header(&self) -> u64 {
        if self.wide {
            16
        } else {
            8
        }
    }

    /// Where the buffer starts: `pos` before an unwind and after a complete
    /// rewind.
    pub fn start(&self) -> u64 {
        self.ptr + self.header()
    }

    /// One past the buffer: the `end` field.
    pub fn end(&self) -> u64 {
        self.start() + self.size
    }

    /// The pointer argument of `asyncify_start_unwind` / `asyncify_start_rewind`.
    pub fn ptr_val(&self) -> Val {
        if self.wide {
            Val::I64(self.ptr as i64)
        } else {
            Val::I32(self.ptr as i32)
        }
    }
}
