//! encryption
