//! The stack as processes: what it is made of and how it is started.

pub mod process;
