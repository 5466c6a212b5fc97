//! Where the asyncify buffer lives while one checkpoint or restore runs.
//!
//! In the module's own `asyncify_memory` when it has one (`instrument
//! --secondary-memory`): all of it is the buffer's.
//!
//! Otherwise in memory 0, as Binaryen's ABI has it, in a window the shim
//! borrows at the top of that memory for the length of one request: it saves
//! the window's bytes, lets the frames be written there, and writes the bytes
//! back once the rewind has reached the checkpoint call again. Nothing else
//! touches memory in between (an unwinding or rewinding function only moves
//! its frame; the host reads the C stack, which lies below the window, and
//! writes the jmp_buf and `ret` only after giving the window back), so the
//! window may overlap anything, heap included, and can never corrupt it.
//!
//! Owning pages instead is not safe: the malloc of wasi-libc (the 2022 one
//! Debian ships) takes everything from `__heap_base` to the end of memory as
//! its first heap the first time it runs, so pages a host grows before the
//! program's first malloc become the program's. The free part of the C stack,
//! which Wasmer uses, is safe but small exactly when unwinds are large (deep
//! nesting), and needs link-time bounds.
//!
//! The window spans the top `span` bytes of memory, `span` being the largest
//! buffer any request has needed (at least [`MIN_WINDOW`]). Only its first
//! part is handed out (`end`): twice the last unwind of the same kind
//! (checkpoints and restores apart: a setjmp unwinds from where it is called,
//! its longjmp usually from deeper, and sizing one by the other made every
//! longjmp call the grow hook), so a request copies about what it unwinds. When a frame does not fit, the instrumented code
//! calls the module's grow hook (`__wasm_rewind_grow_hook`, which
//! `instrument` adds to modules calling the WASIX stack functions), and
//! [`Window::grow`] moves `end` up, saving the bytes it now covers, and past
//! the end of memory grows memory (fresh pages, zeros to give back), up to
//! the configured maximum. A module without the hook (Binaryen's output)
//! cannot ask for more: it gets the whole window at once, reaching the very
//! end of memory, so an overflowing frame traps out of bounds rather than
//! writing over data; the window is four times its largest unwind so far,
//! and at least [`FIXED_WINDOW`].

use crate::driver::{Guest, Mem};
use crate::error::ShimError;

/// The least window given to a module without a grow hook (Binaryen's
/// output), which cannot ask for more room: 64 KiB (the whole of wasm-ld's
/// default C stack), or the maximum if smaller.
pub const FIXED_WINDOW: u64 = 64 << 10;

/// The least of a window handed out to a request.
pub const MIN_WINDOW: u64 = 128;

/// Bytes of the `{pos, end}` structure at the window's start (two u64 at
/// most; 16 for both widths so the buffer stays 16-aligned).
pub const HEADER: u64 = 16;

/// Bytes in a WebAssembly page.
const PAGE: u64 = 65536;

/// The buffer of the request under way.
pub struct Window {
    /// Address of `{pos, end}`.
    pub data: u64,
    /// First byte of the buffer.
    pub start: u64,
    /// End of what the buffer may use now.
    pub end: u64,
    /// End of what the window may grow to without growing memory (the end
    /// of memory when it was borrowed).
    limit: u64,
    /// The bytes of `[data, end)` before the request, to write back; `None`
    /// when the memory is the buffer's own.
    saved: Option<Vec<u8>>,
    /// The highest address the frames reached: what must be written back.
    high_water: u64,
}

/// What the window remembers between requests.
#[derive(Default)]
pub struct WindowSizing {
    /// Bytes the last unwind for a checkpoint took.
    pub last_checkpoint_unwind: u64,
    /// Bytes the last unwind for a restore took.
    pub last_restore_unwind: u64,
    /// The most bytes an unwind took.
    pub largest_unwind: u64,
    /// The most bytes of buffer a request has needed.
    span: u64,
    /// The saved bytes' allocation, reused from request to request.
    spare: Vec<u8>,
}

impl Window {
    /// Places `{pos, end}` and a buffer of at least `frames` bytes (see the
    /// module documentation for where), writes `pos = start`, and returns
    /// the window. `floor` is the lowest address it may take (the top of the
    /// C stack) and `max` the most bytes the buffer may have; `restore` says
    /// whether the request is a restore (or a checkpoint).
    pub fn borrow<G: Guest + ?Sized>(
        g: &mut G,
        sizing: &mut WindowSizing,
        frames: u64,
        floor: u64,
        max: u64,
        restore: bool,
    ) -> Result<Window, ShimError> {
        if frames > max {
            return Err(ShimError::BufferTooSmall {
                needed: frames,
                available: max,
            });
        }
        let window = if g.buffer_memory_is_dedicated() {
            let size = g.buffer_memory_size();
            if size < HEADER + frames {
                return Err(ShimError::BufferTooSmall {
                    needed: frames,
                    available: size.saturating_sub(HEADER),
                });
            }
            let end = (size & !15).min(HEADER + max);
            Window {
                data: 0,
                start: HEADER,
                end,
                limit: end,
                saved: None,
                high_water: HEADER,
            }
        } else {
            let hooked = g.has_grow_hook();
            let want = if hooked {
                let last = if restore {
                    sizing.last_restore_unwind
                } else {
                    sizing.last_checkpoint_unwind
                };
                (2 * last).max(MIN_WINDOW)
            } else {
                (4 * sizing.largest_unwind).max(FIXED_WINDOW)
            }
            .min(max)
            .max(frames);
            sizing.span = sizing.span.max(want);
            // Without a hook the buffer must reach the end of memory (see
            // the module documentation): hand out the whole span.
            let want = if hooked { want } else { sizing.span };
            let span = (HEADER + sizing.span).next_multiple_of(16);
            let floor = floor.next_multiple_of(16);
            let size = g.buffer_memory_size();
            if size < floor.saturating_add(span) {
                g.grow_buffer_memory((floor + span - size).div_ceil(PAGE))
                    .map_err(|_| too_small(frames, size.saturating_sub(floor + HEADER)))?;
            }
            let limit = g.buffer_memory_size() & !15;
            let data = limit - span;
            let end = data + (HEADER + want).next_multiple_of(16);
            let mut saved = std::mem::take(&mut sizing.spare);
            saved.clear();
            g.read_into(Mem::Buffer, data, end - data, &mut saved)?;
            Window {
                data,
                start: data + HEADER,
                end,
                limit,
                saved: Some(saved),
                high_water: data + HEADER,
            }
        };
        write_header(g, window.data, window.start, window.end)?;
        Ok(window)
    }

    /// The grow hook: the frame at `pos` needs `needed` bytes more than the
    /// buffer has. Moves `end` up, at least doubling the buffer, growing
    /// memory when the window reaches its end, up to `max` bytes of buffer.
    pub fn grow<G: Guest + ?Sized>(
        &mut self,
        g: &mut G,
        sizing: &mut WindowSizing,
        pos: u64,
        needed: u64,
        max: u64,
    ) -> Result<(), ShimError> {
        let want = pos.saturating_add(needed);
        if want <= self.end {
            return Ok(());
        }
        let used = pos.saturating_sub(self.start);
        if used.saturating_add(needed) > max {
            return Err(ShimError::BufferTooSmall {
                needed: used.saturating_add(needed),
                available: max,
            });
        }
        let target = want
            .max(self.start + 2 * (self.end - self.start))
            .min(self.start + max)
            .next_multiple_of(16);
        if target > self.limit {
            // Past the end of memory: grow it (the window is at its top, and
            // nothing ran since it was borrowed, so it still is).
            let size = g.buffer_memory_size();
            if size != self.limit {
                return Err(ShimError::Guest {
                    message: "memory changed size while the stack was unwinding".into(),
                });
            }
            g.grow_buffer_memory((target - size).div_ceil(PAGE))
                .map_err(|_| too_small(used + needed, self.limit - self.start))?;
            self.limit = g.buffer_memory_size() & !15;
        }
        let new_end = target.min(self.limit);
        if let Some(saved) = &mut self.saved {
            g.read_into(Mem::Buffer, self.end, new_end - self.end, saved)?;
        }
        self.end = new_end;
        sizing.span = sizing.span.max(new_end - self.start);
        write_header(g, self.data, pos, new_end)
    }

    /// Notes that the frames reached `pos`.
    pub fn reached(&mut self, pos: u64) {
        self.high_water = self.high_water.max(pos);
    }

    /// Gives the window back: writes back the bytes it borrowed, up to where
    /// the frames reached, and keeps the allocation for the next request.
    pub fn give_back<G: Guest + ?Sized>(
        self,
        g: &mut G,
        sizing: &mut WindowSizing,
    ) -> Result<(), ShimError> {
        if let Some(saved) = self.saved {
            let len = (self.high_water.min(self.end) - self.data) as usize;
            g.write(Mem::Buffer, self.data, &saved[..len])?;
            sizing.spare = saved;
        }
        Ok(())
    }
}

fn too_small(needed: u64, available: u64) -> ShimError {
    ShimError::BufferTooSmall { needed, available }
}

/// Writes `{ pos, end }` at `data`.
pub fn write_header<G: Guest + ?Sized>(
    g: &mut G,
    data: u64,
    pos: u64,
    end: u64,
) -> Result<(), ShimError> {
    let mut bytes = [0u8; 16];
    let len = if g.buffer_is_64() {
        bytes[..8].copy_from_slice(&pos.to_le_bytes());
        bytes[8..].copy_from_slice(&end.to_le_bytes());
        16
    } else {
        bytes[..4].copy_from_slice(&(pos as u32).to_le_bytes());
        bytes[4..8].copy_from_slice(&(end as u32).to_le_bytes());
        8
    };
    g.write(Mem::Buffer, data, &bytes[..len])
}

/// Reads `pos` from `{ pos, end }` at `data`.
pub fn read_pos<G: Guest + ?Sized>(g: &mut G, data: u64) -> Result<u64, ShimError> {
    if g.buffer_is_64() {
        let mut b = [0u8; 8];
        g.read_exact(Mem::Buffer, data, &mut b)?;
        Ok(u64::from_le_bytes(b))
    } else {
        let mut b = [0u8; 4];
        g.read_exact(Mem::Buffer, data, &mut b)?;
        Ok(u32::from_le_bytes(b) as u64)
    }
}
