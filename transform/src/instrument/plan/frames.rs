//! Phase 2 of a plan: the frames that hold sites, and their items.

use super::{
    block_sig, fmt_type, stack_at, storable, Frame, FrameId, Item, LocalPool, Prespill, Site,
};
use crate::error::{Error, Result};
use crate::instrument::body::{is_block_opener, Body};
use crate::module_info::ModuleInfo;
use std::collections::HashMap;
use wasmparser::{BlockType, Operator, ValType};

/// The frames of a function, and what they add to what each site saves.
pub(super) struct Frames {
    /// Frames holding items.
    pub(super) frames: HashMap<FrameId, Frame>,
    /// Per site: the prespill locals of the constructs around it. A rewind
    /// needs them back, but liveness runs on the original code, which does not
    /// have them, so it cannot see that.
    pub(super) held_across: Vec<Vec<u32>>,
}

/// A frame being walked.
struct Open {
    id: FrameId,
    /// Op index of the construct's opener (`u32::MAX` for the function body).
    opener: u32,
    /// The first site inside the frame: those up to the walk's position are.
    first_site: usize,
}

/// Makes the frames and items: walks the structure with a stack of open
/// frames, making every site an item of its frame, and every construct that
/// holds sites an item of its parent frame.
///
/// Refuses a site inside a legacy `try` (a rewind cannot re-enter its
/// `catch`), and a reference value below a construct holding sites.
pub(super) fn find_frames(
    info: &ModuleInfo<'_>,
    body: &Body<'_>,
    sites: &[Site],
    pool: &mut LocalPool,
) -> Result<Frames> {
    let mut walk = Walk::new(sites.len());
    for (i, op) in body.ops.iter().enumerate() {
        let i = i as u32;
        if walk.next_site < sites.len() && sites[walk.next_site].op == i {
            walk.add_site(sites);
            continue;
        }
        match op {
            op if is_block_opener(op) => walk.enter_construct(i),
            Operator::Else => walk.enter_else(),
            Operator::Catch { .. } | Operator::CatchAll | Operator::Delegate { .. } => {
                walk.leave_try_arm(body, i, op)?
            }
            Operator::End if walk.open.len() > 1 => {
                walk.close_construct(info, body, sites, pool, i)?
            }
            _ => {}
        }
    }
    order_items(info, body, &mut walk.frames);
    Ok(Frames {
        frames: walk.frames,
        held_across: walk.held_across,
    })
}

/// Where the walk over the structure stands, and what it has made so far.
struct Walk {
    frames: HashMap<FrameId, Frame>,
    /// The frames around the walk's position, the function body first.
    open: Vec<Open>,
    /// The first site the walk has not passed.
    next_site: usize,
    /// See [`Frames::held_across`].
    held_across: Vec<Vec<u32>>,
}

impl Walk {
    fn new(n_sites: usize) -> Walk {
        Walk {
            frames: HashMap::new(),
            open: vec![Open {
                id: (u32::MAX, 0),
                opener: u32::MAX,
                first_site: 0,
            }],
            next_site: 0,
            held_across: vec![Vec::new(); n_sites],
        }
    }

    /// Makes the next site an item of the frame it is in.
    fn add_site(&mut self, sites: &[Site]) {
        let parent = self.open.last().unwrap().id;
        add_item(
            &mut self.frames,
            parent,
            site_item(&sites[self.next_site], self.next_site),
        );
        self.next_site += 1;
    }

    fn enter_construct(&mut self, opener: u32) {
        self.open.push(Open {
            id: (opener, 0),
            opener,
            first_site: self.next_site,
        });
    }

    /// The `else` arm of an `if` is a frame of its own.
    fn enter_else(&mut self) {
        let top = self.open.last_mut().unwrap();
        top.id = (top.opener, 1);
    }

    /// At a `catch`, `catch_all` or `delegate` of a legacy `try`: refuses the
    /// sites in the `try` so far, as a rewind cannot re-enter a `catch` clause.
    /// A `delegate` ends the `try`, which then has no `end`.
    fn leave_try_arm(&mut self, body: &Body<'_>, i: u32, op: &Operator<'_>) -> Result<()> {
        let top = self.open.last().unwrap();
        if self.next_site > top.first_site {
            return Err(Error::unsupported(
                "a call that can unwind inside a legacy `try` block: a rewind \
                 cannot re-enter a `catch` clause",
            )
            .at(body.offsets[i as usize]));
        }
        if matches!(op, Operator::Delegate { .. }) {
            self.open.pop();
        }
        Ok(())
    }

    /// At the `end` of a construct: if it holds sites, it becomes an item of
    /// its parent frame, and the sites in it save its prespill.
    fn close_construct(
        &mut self,
        info: &ModuleInfo<'_>,
        body: &Body<'_>,
        sites: &[Site],
        pool: &mut LocalPool,
        end: u32,
    ) -> Result<()> {
        let closed = self.open.pop().unwrap();
        let inside = closed.first_site..self.next_site;
        if inside.is_empty() {
            return Ok(());
        }
        let item = construct_item(info, body, closed.opener, end, &sites[inside.clone()], pool)?;
        if let Some(p) = &item.prespill {
            for held in &mut self.held_across[inside] {
                held.extend(p.below.iter().map(|(l, _)| *l));
            }
        }
        let parent = self.open.last().unwrap().id;
        add_item(&mut self.frames, parent, item);
        Ok(())
    }
}

fn add_item(frames: &mut HashMap<FrameId, Frame>, frame: FrameId, item: Item) {
    frames
        .entry(frame)
        .or_insert_with(|| Frame {
            params: Vec::new(),
            items: Vec::new(),
        })
        .items
        .push(item);
}

/// The item of site number `index` (0-based). A rewind re-enters its frame
/// after the operand producers it runs again.
fn site_item(site: &Site, index: usize) -> Item {
    let mut entry_types = site.below.clone();
    entry_types.extend(&site.operands[..site.operands.len() - site.rerun]);
    Item {
        op: site.op,
        entry_op: site.op - site.rerun as u32,
        direct_entry: false,
        lo: site.k,
        hi: site.k,
        entry_types,
        construct_params: Vec::new(),
        else_lo: None,
        prespill: None,
        site: Some(index),
    }
}

/// The item of the construct opened at `opener` and closed at `end`, which
/// holds `inside` (not empty). Values of the parent frame below the
/// construct's inputs get a prespill, taking fresh locals from `pool`.
fn construct_item(
    info: &ModuleInfo<'_>,
    body: &Body<'_>,
    opener: u32,
    end: u32,
    inside: &[Site],
    pool: &mut LocalPool,
) -> Result<Item> {
    let opener_op = &body.ops[opener as usize];
    let stack = stack_at(body, opener);
    let (params, results) = block_sig(info, opener_block_type(opener_op).unwrap());
    let n_inputs = params.len() + usize::from(matches!(opener_op, Operator::If { .. }));
    let split = stack.frame_types.len() - n_inputs;
    let inputs = stack.frame_types[split..].to_vec();
    let below: Vec<ValType> = stack.frame_types[..split].to_vec();
    debug_assert!(!stack.unreachable, "dead constructs hold no sites");
    let else_lo = match body.else_of.get(opener as usize) {
        Some(&e) if e != u32::MAX => inside.iter().find(|s| s.op > e).map(|s| s.k),
        _ => None,
    };
    let prespill = if below.is_empty() {
        None
    } else {
        for t in &below {
            if !storable(*t) {
                return Err(Error::unsupported(format!(
                    "a {} value is on the operand stack across a block holding \
                     a call that can unwind",
                    fmt_type(*t)
                ))
                .at(body.offsets[opener as usize]));
            }
        }
        Some(Prespill {
            below: below.iter().map(|t| (pool.fresh(*t), *t)).collect(),
            inputs: inputs.iter().map(|t| (pool.fresh(*t), *t)).collect(),
            results: results.iter().map(|t| (pool.fresh(*t), *t)).collect(),
            end,
        })
    };
    Ok(Item {
        op: opener,
        entry_op: opener,
        direct_entry: false,
        lo: inside[0].k,
        hi: inside[inside.len() - 1].k,
        entry_types: inputs,
        construct_params: params,
        else_lo,
        prespill,
        site: None,
    })
}

/// Puts each frame's items in code order, and fills in what needs the whole
/// frame: its parameters, and whether its first item is entered directly.
fn order_items(info: &ModuleInfo<'_>, body: &Body<'_>, frames: &mut HashMap<FrameId, Frame>) {
    // Items are pushed when constructs close, so a frame's items may be out of
    // order: sort by position.
    for (id, frame) in frames.iter_mut() {
        frame.items.sort_by_key(|it| it.op);
        if id.0 != u32::MAX {
            let (params, _) = block_sig(info, opener_block_type(&body.ops[id.0 as usize]).unwrap());
            frame.params = params;
        }
        let frame_start = match *id {
            (u32::MAX, _) => 0,
            (opener, 0) => opener + 1,
            (opener, _) => body.else_of[opener as usize] + 1,
        };
        let first = &mut frame.items[0];
        first.direct_entry = first.prespill.is_none()
            && match first.site {
                // A construct opening the frame.
                None => {
                    first.op == frame_start
                        && matches!(
                            body.ops[first.op as usize],
                            Operator::Block { .. }
                                | Operator::Loop { .. }
                                | Operator::TryTable { .. }
                                | Operator::Try { .. }
                        )
                }
                // A call whose operands are all produced by ops the rewind
                // may run again, which are all the frame has before it: a
                // rewind falls through them into the call, so the frame
                // needs no dispatch for it (an `if` arm that only makes a
                // call pays no state test when entered).
                Some(_) => first.entry_op == frame_start && first.entry_types.is_empty(),
            };
    }
}

fn opener_block_type(op: &Operator<'_>) -> Option<BlockType> {
    match op {
        Operator::Block { blockty }
        | Operator::Loop { blockty }
        | Operator::If { blockty }
        | Operator::Try { blockty } => Some(*blockty),
        Operator::TryTable { try_table } => Some(try_table.ty),
        _ => None,
    }
}
