//! Code generated from `proto/` at build time (never checked in).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `juy.calendar.v1`: the CalendarSync and Admin services and their messages.
pub mod v1 {
    tonic::include_proto!("juy.calendar.v1");
}

/// The encoded `FileDescriptorSet` of every served proto and its imports, for
/// server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/juy_calendar_v1_descriptor.bin"));
