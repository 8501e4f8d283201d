#![doc = include_str!("../README.md")]

pub mod kernel;
pub mod protocol;
