//! The WASIX ABI the shim implements: the `jmp_buf` layout and errno values.
//!
//! Everything here is spelled out by hand (sizes, offsets, a `#[repr(C)]`
//! struct with explicit alignment, little-endian encoding) rather than derived
//! from whatever a Rust type happens to look like: Wasmer once broke this very
//! ABI by storing the hash as a `u128`, which silently moved it to alignment 16
//! and the struct to 32 bytes. The tests pin every number.

/// Size in bytes of a WASIX `jmp_buf` in guest memory.
pub const JMP_BUF_SIZE: u32 = 24;
/// Alignment in bytes the guest gives a `jmp_buf` (that of its `u64` field).
pub const JMP_BUF_ALIGN: u32 = 8;
/// Offset of the `u64 user` field, which the shim leaves to the guest.
pub const JMP_BUF_USER_OFFSET: u32 = 0;
/// Offset of the snapshot hash the shim writes at a checkpoint.
pub const JMP_BUF_HASH_OFFSET: u32 = 8;
/// Length of the snapshot hash: a 128-bit keyed hash (see [`crate::hash`]).
pub const HASH_LEN: usize = 16;

/// jmp_buf as WASIX lays it out: `{ u64 user @0; u8 hash[16] @8 }`.
///
/// The hash is a byte array (alignment 1) so the struct keeps the alignment
/// of `user`, 8, and has no padding: 24 bytes exactly.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JmpBuf {
    /// Opaque to the shim; kept for the guest (WASIX libc leaves it alone).
    pub user: u64,
    /// Names the snapshot in the host's store; the guest cannot choose a
    /// valid one because it is a keyed hash.
    pub hash: [u8; HASH_LEN],
}

impl JmpBuf {
    /// Decodes the 24 bytes read from guest memory (`user` little-endian, as
    /// WebAssembly memory is).
    pub fn from_bytes(b: &[u8; JMP_BUF_SIZE as usize]) -> JmpBuf {
        let user_at = JMP_BUF_USER_OFFSET as usize;
        let hash_at = JMP_BUF_HASH_OFFSET as usize;
        let mut user = [0u8; 8];
        user.copy_from_slice(&b[user_at..user_at + 8]);
        let mut hash = [0u8; HASH_LEN];
        hash.copy_from_slice(&b[hash_at..hash_at + HASH_LEN]);
        JmpBuf {
            user: u64::from_le_bytes(user),
            hash,
        }
    }

    /// Encodes the buffer as the 24 bytes to write into guest memory
    /// (`user` little-endian).
    pub fn to_bytes(&self) -> [u8; JMP_BUF_SIZE as usize] {
        let user_at = JMP_BUF_USER_OFFSET as usize;
        let hash_at = JMP_BUF_HASH_OFFSET as usize;
        let mut b = [0u8; JMP_BUF_SIZE as usize];
        b[user_at..user_at + 8].copy_from_slice(&self.user.to_le_bytes());
        b[hash_at..hash_at + HASH_LEN].copy_from_slice(&self.hash);
        b
    }
}

/// WASIX errno values: success 0, fault 21, inval 28, noexec 45, overflow 61, memviolation 78, unknown 79.
///
/// Only the values the shim returns are listed; the numbers are WASI's
/// (preview 1) plus WASIX's extensions, so `errno as u16` (or `as i32` for
/// the syscall's return value) is what the guest expects.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    /// No error.
    Success = 0,
    /// Bad address: a pointer argument outside guest memory.
    Fault = 21,
    /// Invalid argument: e.g. a `jmp_buf` naming no live snapshot.
    Inval = 28,
    /// Executable format error: the module lacks what the shim needs
    /// (asyncify instrumentation, `__stack_pointer`).
    Noexec = 45,
    /// Value too large: a snapshot or unwound stack does not fit its limit.
    Overflow = 61,
    /// Memory access violation (WASIX extension).
    Memviolation = 78,
    /// Unknown error (WASIX extension): host-side failures.
    Unknown = 79,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn jmp_buf_layout_matches_wasix() {
        assert_eq!(size_of::<JmpBuf>(), JMP_BUF_SIZE as usize);
        assert_eq!(align_of::<JmpBuf>(), JMP_BUF_ALIGN as usize);
        assert_eq!(offset_of!(JmpBuf, user), JMP_BUF_USER_OFFSET as usize);
        assert_eq!(offset_of!(JmpBuf, hash), JMP_BUF_HASH_OFFSET as usize);
        assert_eq!(size_of::<[u8; HASH_LEN]>(), 16);
        assert_eq!(JMP_BUF_SIZE, 24);
        assert_eq!(JMP_BUF_ALIGN, 8);
        assert_eq!(JMP_BUF_USER_OFFSET, 0);
        assert_eq!(JMP_BUF_HASH_OFFSET, 8);
        assert_eq!(HASH_LEN, 16);
    }

    #[test]
    fn jmp_buf_bytes_round_trip_little_endian() {
        let buf = JmpBuf {
            user: 0x0102_0304_0506_0708,
            hash: core::array::from_fn(|i| 0xa0 + i as u8),
        };
        let bytes = buf.to_bytes();
        assert_eq!(&bytes[0..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&bytes[8..24], &buf.hash);
        assert_eq!(JmpBuf::from_bytes(&bytes), buf);

        let raw: [u8; 24] = core::array::from_fn(|i| i as u8 * 7);
        assert_eq!(JmpBuf::from_bytes(&raw).to_bytes(), raw);
    }

    #[test]
    fn errno_values_match_wasix() {
        assert_eq!(Errno::Success as u16, 0);
        assert_eq!(Errno::Fault as u16, 21);
        assert_eq!(Errno::Inval as u16, 28);
        assert_eq!(Errno::Noexec as u16, 45);
        assert_eq!(Errno::Overflow as u16, 61);
        assert_eq!(Errno::Memviolation as u16, 78);
        assert_eq!(Errno::Unknown as u16, 79);
        assert_eq!(size_of::<Errno>(), 2);
    }
}
