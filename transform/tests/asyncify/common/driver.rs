//! The driver side of the sleep protocol: call the export; when it returns
//! unwinding, stop the unwind, start the rewind and call the same export
//! again, until it returns in state 0. Several coroutines, each with its own
//! buffer, take turns.

use wasmtime::{bail, format_err, Result, Val};

use super::{values, Buffer, Guest, ImportCall, Value};

/// One coroutine: an export call with its own `{pos, end}` structure and buffer.
#[derive(Clone, Debug)]
pub struct Coroutine {
    /// The export to call.
    pub export: String,
    /// Its arguments (the same on every re-entry).
    pub args: Vec<Value>,
    /// Its asyncify data structure.
    pub buffer: Buffer,
}

impl Coroutine {
    /// A coroutine calling `export(args)` with its structure at `buffer`.
    pub fn new(export: &str, args: &[Value], buffer: Buffer) -> Coroutine {
        Coroutine {
            export: export.to_string(),
            args: args.to_vec(),
            buffer,
        }
    }
}

/// What one coroutine did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The export's results on the call that returned in state 0.
    pub results: Vec<Value>,
    /// How many times it unwound (and so was resumed).
    pub unwinds: usize,
    /// The import calls it made, in order.
    pub log: Vec<ImportCall>,
    /// The most buffer bytes one unwind used (`pos - start` after it).
    pub max_buffer_used: u64,
}

/// One coroutine as the scheduler runs it, in wasmtime values (the
/// differential oracle passes and gets references too).
struct Turns<'a> {
    export: &'a str,
    args: &'a [Val],
    buffer: &'a Buffer,
    /// The call it unwound at, while it waits for its next turn.
    pending: Option<ImportCall>,
    done: Option<Vec<Val>>,
    unwinds: usize,
    log: Vec<ImportCall>,
    max_used: u64,
}

/// Runs the coroutines round robin: each runs until it unwinds or returns, then
/// the next one gets a turn; an unwound coroutine is resumed on its next turn by
/// `asyncify_start_rewind(its ptr)` and a new call of its export with its
/// arguments. Returns when all have returned, in the order given.
///
/// Checks the ABI on the way: state 1 after an unwinding return, an import
/// that started the unwind, `pos` within `[start, end]` and `end` untouched
/// after every unwind, and no pending call after a return in state 0 (the
/// host checks that the rewind reached the import that unwound). Records the
/// watched globals (see [`Host::watch`](super::Host::watch)) when the export
/// returns unwinding and when the rewind starts. The host's log keeps every
/// call; each coroutine's share of it is copied to its [`Finished::log`].
fn schedule(guest: &mut Guest, turns: &mut [Turns<'_>]) -> Result<()> {
    for t in turns.iter() {
        guest.init_buffer(t.buffer);
    }
    while turns.iter().any(|t| t.done.is_none()) {
        for t in turns.iter_mut().filter(|t| t.done.is_none()) {
            let buffer = t.buffer;
            guest.host().buffer = buffer.clone();
            if let Some(call) = t.pending.take() {
                guest.host().pending = Some(call);
                guest.start_rewind(buffer)?;
                guest.note("rewind started");
            }
            let logged = guest.host().log.len();
            let results = guest.call_vals(t.export, t.args)?;
            t.log.extend_from_slice(&guest.host().log[logged..]);
            match guest.state()? {
                0 => {
                    if let Some(call) = guest.host().pending.take() {
                        bail!("`{}` returned normally without resuming {call:?}", t.export);
                    }
                    t.done = Some(results);
                }
                1 => {
                    guest.note("export returned, unwinding");
                    guest.stop_unwind()?;
                    let (pos, end) = guest.pos_end(buffer);
                    if pos < buffer.start() || pos > end || end != buffer.end() {
                        bail!(
                            "after an unwind pos = {pos:#x}, end = {end:#x}; the buffer is \
                             [{:#x}, {:#x}]",
                            buffer.start(),
                            buffer.end()
                        );
                    }
                    t.max_used = t.max_used.max(pos - buffer.start());
                    t.unwinds += 1;
                    guest.host().unwinds_stopped += 1;
                    let pending = guest.host().pending.take().ok_or_else(|| {
                        format_err!("`{}` unwound but no host import started it", t.export)
                    })?;
                    t.pending = Some(pending);
                    if t.unwinds > guest.host().max_unwinds {
                        bail!("more than {} unwinds in one call", guest.host().max_unwinds);
                    }
                }
                s => bail!("`{}` returned in state {s}", t.export),
            }
        }
    }
    Ok(())
}

/// Runs the coroutines round robin through the driver loop (see `schedule`
/// above) and returns what each did, in the order given.
pub fn run_coroutines(guest: &mut Guest, coroutines: &[Coroutine]) -> Result<Vec<Finished>> {
    let args: Vec<Vec<Val>> = coroutines
        .iter()
        .map(|co| co.args.iter().map(|v| v.to_val()).collect())
        .collect();
    let mut turns: Vec<Turns<'_>> = coroutines
        .iter()
        .zip(&args)
        .map(|(co, args)| Turns {
            export: &co.export,
            args,
            buffer: &co.buffer,
            pending: None,
            done: None,
            unwinds: 0,
            log: Vec::new(),
            max_used: 0,
        })
        .collect();
    schedule(guest, &mut turns)?;
    Ok(turns
        .into_iter()
        .map(|t| Finished {
            results: values(&t.done.expect("all done")),
            unwinds: t.unwinds,
            log: t.log,
            max_buffer_used: t.max_used,
        })
        .collect())
}

impl Guest {
    /// Runs export `name` to completion through the driver loop with the
    /// host's buffer.
    pub fn drive(&mut self, name: &str, args: &[Value]) -> Result<Finished> {
        let buffer = self.host().buffer.clone();
        let co = Coroutine::new(name, args, buffer);
        Ok(run_coroutines(self, &[co])?.remove(0))
    }

    /// [`Guest::drive`] with wasmtime values (references included); the
    /// unwinds are counted in the host, the calls are in its log.
    pub fn drive_vals(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>> {
        let buffer = self.host().buffer.clone();
        let mut turns = [Turns {
            export: name,
            args,
            buffer: &buffer,
            pending: None,
            done: None,
            unwinds: 0,
            log: Vec::new(),
            max_used: 0,
        }];
        schedule(self, &mut turns)?;
        let [t] = turns;
        Ok(t.done.expect("done"))
    }
}
