//! Free/busy and slot finding: which events make their owner busy (the one
//! busy policy every provider follows, [`policy`]), merging busy time into
//! disjoint intervals ([`freebusy`]), busy time merged ahead of reading
//! ([`blocks`]), working hours in an IANA zone
//! ([`hours`]) and ranked free slots for a group of invitees ([`slots`]).
//!
//! Pure functions over domain types: no I/O, no clock (callers pass every
//! instant), no event text (only times, status, transparency, the owner's
//! answer and the event kind ever reach this crate), so nothing here can leak
//! a title.
#![forbid(unsafe_code)]

pub mod blocks;
pub mod freebusy;
pub mod hours;
mod localtime;
pub mod policy;
pub mod slots;

pub use blocks::{Block, BlockMember, build_blocks};
pub use freebusy::{BusyInterval, BusySpan, merge};
pub use hours::{WorkingHours, WorkingPeriod};
pub use policy::{BusyFacts, BusyKind, busy_kind, busy_span, owner_zone};
pub use slots::{Conflict, Invitee, Slot, SlotError, SlotQuery, SlotSearch, find_slots};
