//! Text conventions shared by the model layer and the chat pipeline; imports
//! nothing from the crate, so any layer may use it.

pub mod citations;
